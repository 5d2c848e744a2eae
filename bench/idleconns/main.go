// Command idleconns measures what an idle keep-alive client connection costs a proxy in memory.
//
// It reads the resident set size (VmRSS) of the given processes and all their descendants (nginx
// workers are children of the master), opens -n connections to -addr, sends one GET on each and reads
// the whole response, leaves them all open and idle for -hold, reads the RSS again, checks how many
// connections the proxy kept open, closes everything and prints one line:
//
//	idleconns addr=127.0.0.1:8080 n=4000 opened=4000 failed=0 still_open=4000 rss_before_kb=9000 rss_after_kb=21000 bytes_per_conn=3072
//
// (or a JSON object with -json). bytes_per_conn is (after - before) * 1024 / opened. The whole run is
// bounded by -timeout; it only talks to the address it is given, so point it at loopback.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is what one run reports; the JSON names match the key=value line.
type result struct {
	Addr         string `json:"addr"`
	N            int    `json:"n"`
	Opened       int    `json:"opened"`
	Failed       int    `json:"failed"`
	StillOpen    int    `json:"still_open"`
	RSSBeforeKB  int64  `json:"rss_before_kb"`
	RSSAfterKB   int64  `json:"rss_after_kb"`
	BytesPerConn int64  `json:"bytes_per_conn"`
	FirstError   string `json:"first_error,omitempty"`
}

func main() {
	var (
		addr        = flag.String("addr", "127.0.0.1:8080", "proxy address host:port")
		n           = flag.Int("n", 4000, "connections to open")
		hold        = flag.Duration("hold", 3*time.Second, "how long the connections stay idle before RSS is read again")
		pidList     = flag.String("pids", "", "comma-separated PIDs whose VmRSS (with all descendants) is summed; empty: no memory numbers")
		path        = flag.String("path", "/", "request path")
		host        = flag.String("host", "bench.local", "Host header")
		concurrency = flag.Int("concurrency", 64, "connections opened in parallel")
		timeout     = flag.Duration("timeout", 60*time.Second, "bound on the whole run")
		asJSON      = flag.Bool("json", false, "print a JSON object instead of a key=value line")
	)
	flag.Parse()
	pids, err := parsePIDs(*pidList)
	if err != nil {
		fatal(err)
	}
	if *n < 1 || *concurrency < 1 || *hold < 0 || *hold >= *timeout {
		fatal(errors.New("need -n >= 1, -concurrency >= 1 and 0 <= -hold < -timeout"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	res := result{Addr: *addr, N: *n}
	if len(pids) > 0 {
		if res.RSSBeforeKB, err = rssKB(pids); err != nil {
			fatal(err)
		}
	}
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: waage-idleconns\r\n\r\n", *path, *host)
	conns, failed, firstErr := openAll(ctx, *addr, req, *n, *concurrency)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	res.Opened, res.Failed = len(conns), failed
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}

	select {
	case <-time.After(*hold):
	case <-ctx.Done():
	}
	if len(pids) > 0 {
		if res.RSSAfterKB, err = rssKB(pids); err != nil {
			fatal(err)
		}
		if res.Opened > 0 {
			res.BytesPerConn = (res.RSSAfterKB - res.RSSBeforeKB) * 1024 / int64(res.Opened)
		}
	}
	res.StillOpen = countOpen(conns)

	if *asJSON {
		out, _ := json.Marshal(res)
		fmt.Println(string(out))
	} else {
		fmt.Printf("idleconns addr=%s n=%d opened=%d failed=%d still_open=%d rss_before_kb=%d rss_after_kb=%d bytes_per_conn=%d\n",
			res.Addr, res.N, res.Opened, res.Failed, res.StillOpen, res.RSSBeforeKB, res.RSSAfterKB, res.BytesPerConn)
	}
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "idleconns: %d connections failed, first: %v\n", failed, firstErr)
	}
	if res.Opened == 0 {
		os.Exit(1) // nothing to close: no connection was opened
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "idleconns: %v\n", err)
	os.Exit(2)
}

func parsePIDs(s string) ([]int, error) {
	var pids []int
	for f := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("-pids: %q is not a PID", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// openAll opens n connections, concurrency at a time, each answering one GET fully before it is
// kept. It stops early when ctx ends.
func openAll(ctx context.Context, addr, req string, n, concurrency int) (conns []net.Conn, failed int, firstErr error) {
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	dialer := net.Dialer{Timeout: 5 * time.Second}
	for range min(concurrency, n) {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				c, err := openOne(ctx, &dialer, addr, req)
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return conns, failed, firstErr
}

func openOne(ctx context.Context, dialer *net.Dialer, addr, req string) (net.Conn, error) {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, fmt.Errorf("write: %w", err)
	}
	// The bufio.Reader is dropped once the response is read: what stays is the bare connection, so the
	// client side holds little beyond the socket.
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		c.Close()
		return nil, fmt.Errorf("read body: %w", err)
	case resp.StatusCode != http.StatusOK:
		c.Close()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	case resp.Close:
		c.Close()
		return nil, errors.New("proxy closed the connection after the response (no keep-alive)")
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// countOpen probes every connection at once with a short read: a timeout means the proxy still holds
// it open, EOF or a reset means it closed it during the hold.
func countOpen(conns []net.Conn) int {
	var open atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(200 * time.Millisecond)
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(deadline)
			var b [1]byte
			_, err := c.Read(b[:])
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				open.Add(1)
			}
		})
	}
	wg.Wait()
	return int(open.Load())
}

// rssKB sums VmRSS over pids and all their descendants, each counted once.
func rssKB(pids []int) (int64, error) {
	children, err := childrenMap()
	if err != nil {
		return 0, err
	}
	seen := map[int]bool{}
	queue := append([]int(nil), pids...)
	var total int64
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		kb, err := vmRSS(pid)
		if err != nil {
			return 0, err
		}
		total += kb
		queue = append(queue, children[pid]...)
	}
	return total, nil
}

func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS (a kernel thread or a zombie?)", pid)
}

// childrenMap maps each PID to its children, from the PPID field of every /proc/PID/stat.
func childrenMap() (map[int][]int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	m := map[int][]int{}
	for _, p := range stats {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // the process ended meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ')'.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		pid, err1 := strconv.Atoi(strings.Fields(s)[0])
		ppid, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil {
			m[ppid] = append(m[ppid], pid)
		}
	}
	return m, nil
}
