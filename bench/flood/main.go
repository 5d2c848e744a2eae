// Command flood sends HTTP/1.1 GET requests over keep-alive connections from a chosen loopback
// source address, which wrk cannot do, so that a proxy's per-source limits can tell a flooder from
// a legitimate client. bench/protect.sh runs two at once: a flooder and a paced client.
//
// Flood mode (the default) keeps -conns connections busy, each sending its next request as soon as
// the answer to the previous one is in, for -duration:
//
//	go run ./bench/flood -target http://127.0.0.1:8080/ -src 127.0.0.60 -conns 32 -duration 10s
//
// Paced mode (-rate > 0) sends -rate requests per second on one connection for -duration. The
// latency of a request that had to wait for the answer to the previous one is counted from the
// time it was due, not from when it went out, so a stall shows in every request it delays; a
// request still waiting to go out -timeout after -duration ended counts as missed:
//
//	go run ./bench/flood -target http://127.0.0.1:8080/ -src 127.0.0.20 -rate 20 -duration 10s
//
// Either way it prints one line (or a JSON object with -json):
//
//	flood mode=paced src=127.0.0.20 conns=1 duration_s=10.00 due=200 requests=200 ok=200 s429=0 s4xx=0 s5xx=0 other=0 errors=0 missed=0 reconnects=0 rps=20.0 p50_us=412 p99_us=1530 max_us=2210
//
// ok counts 2xx answers, s4xx the 4xx other than 429, other the 1xx and 3xx; errors counts
// requests that got no answer (connection refused or closed, -timeout); p50, p99 and max are over
// the requests that got an answer, whatever its status (-latencies FILE writes them all, to pool
// several runs). A connection the proxy closes is opened again (reconnects). The run is bounded
// by -duration plus -timeout and by -max-requests; both the target and the source must be
// loopback addresses.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// result is what one run reports; the JSON names match the key=value line.
type result struct {
	Mode       string  `json:"mode"`
	Src        string  `json:"src"`
	Conns      int     `json:"conns"`
	DurationS  float64 `json:"duration_s"`
	Due        int64   `json:"due"` // paced mode: requests the rate called for
	Requests   int64   `json:"requests"`
	OK         int64   `json:"ok"`
	S429       int64   `json:"s429"`
	S4xx       int64   `json:"s4xx"`
	S5xx       int64   `json:"s5xx"`
	Other      int64   `json:"other"`
	Errors     int64   `json:"errors"`
	Missed     int64   `json:"missed"`
	Reconnects int64   `json:"reconnects"`
	RPS        float64 `json:"rps"`
	P50us      int64   `json:"p50_us"`
	P99us      int64   `json:"p99_us"`
	MaxUs      int64   `json:"max_us"`
	FirstError string  `json:"first_error,omitempty"`
}

// maxSamples bounds the latencies kept in memory over all connections; beyond it requests are
// still counted but their latencies dropped.
const maxSamples = 4 << 20

func main() {
	var (
		target   = flag.String("target", "http://127.0.0.1:8080/", "URL to GET (loopback, http)")
		src      = flag.String("src", "127.0.0.1", "loopback address to connect from")
		conns    = flag.Int("conns", 32, "keep-alive connections (flood mode)")
		rate     = flag.Float64("rate", 0, "requests per second on one connection (paced mode); 0: flood mode")
		duration = flag.Duration("duration", 10*time.Second, "how long to send")
		timeout  = flag.Duration("timeout", 2*time.Second, "bound on one request, from connect to the end of the answer")
		maxReq   = flag.Int64("max-requests", 50_000_000, "bound on the requests of the whole run")
		asJSON   = flag.Bool("json", false, "print a JSON object instead of a key=value line")
		latFile  = flag.String("latencies", "", "also write each measured latency to this file, in microseconds, one a line, in request order")
	)
	flag.Parse()
	srcAddr, err := netip.ParseAddr(*src)
	if err != nil || !srcAddr.IsLoopback() {
		fatal(fmt.Errorf("-src %q: want a loopback address such as 127.0.0.60", *src))
	}
	addr, req, err := parseTarget(*target)
	if err != nil {
		fatal(err)
	}
	if *conns < 1 || *conns > 10_000 || *duration <= 0 || *duration > time.Hour || *timeout <= 0 || *maxReq < 1 ||
		*rate < 0 || *rate > 100_000 || math.IsNaN(*rate) {
		fatal(errors.New("need 1 <= -conns <= 10000, 0 < -duration <= 1h, -timeout > 0, -max-requests >= 1, 0 <= -rate <= 100000"))
	}

	r := &runner{
		addr:    addr,
		req:     []byte(req),
		timeout: *timeout,
		dialer:  net.Dialer{LocalAddr: &net.TCPAddr{IP: srcAddr.AsSlice()}, Timeout: *timeout},
		budget:  *maxReq,
	}
	res := result{Src: srcAddr.String(), Conns: *conns}
	start := time.Now()
	end := start.Add(*duration)
	var lat []time.Duration
	if *rate > 0 {
		res.Mode, res.Conns = "paced", 1
		var w worker
		res.Due = r.paced(&w, *rate, start, end)
		lat = w.lat
	} else {
		res.Mode = "flood"
		workers := make([]worker, *conns)
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() { r.flood(&workers[i], end, maxSamples / *conns) })
		}
		wg.Wait()
		for i := range workers {
			lat = append(lat, workers[i].lat...)
		}
	}
	elapsed := min(time.Since(start), *duration)

	res.DurationS = math.Round(elapsed.Seconds()*100) / 100
	res.Requests = r.requests.Load()
	res.OK, res.S429, res.S4xx = r.ok.Load(), r.s429.Load(), r.s4xx.Load()
	res.S5xx, res.Other, res.Errors = r.s5xx.Load(), r.other.Load(), r.errs.Load()
	res.Reconnects = r.reconnects.Load()
	if res.Mode == "paced" {
		res.Missed = max(res.Due-res.Requests, 0)
	}
	if elapsed > 0 {
		res.RPS = math.Round(float64(res.Requests)/elapsed.Seconds()*10) / 10
	}
	if *latFile != "" {
		if err := writeLatencies(*latFile, lat); err != nil {
			fatal(err)
		}
	}
	slices.Sort(lat)
	res.P50us = percentile(lat, 0.50).Microseconds()
	res.P99us = percentile(lat, 0.99).Microseconds()
	if len(lat) > 0 {
		res.MaxUs = lat[len(lat)-1].Microseconds()
	}
	if e := r.firstErr.Load(); e != nil {
		res.FirstError = (*e).Error()
	}

	if *asJSON {
		out, _ := json.Marshal(res)
		fmt.Println(string(out))
	} else {
		fmt.Printf("flood mode=%s src=%s conns=%d duration_s=%.2f due=%d requests=%d ok=%d s429=%d s4xx=%d s5xx=%d other=%d errors=%d missed=%d reconnects=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d\n",
			res.Mode, res.Src, res.Conns, res.DurationS, res.Due, res.Requests, res.OK, res.S429, res.S4xx, res.S5xx,
			res.Other, res.Errors, res.Missed, res.Reconnects, res.RPS, res.P50us, res.P99us, res.MaxUs)
	}
	if res.FirstError != "" {
		fmt.Fprintf(os.Stderr, "flood: %d requests failed, first: %s\n", res.Errors, res.FirstError)
	}
	if res.Requests == res.Errors {
		os.Exit(1) // not one answer
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "flood: %v\n", err)
	os.Exit(2)
}

// parseTarget checks that u is a plain http URL on a loopback address and returns host:port and
// the request to send.
func parseTarget(u string) (addr, req string, err error) {
	t, err := url.Parse(u)
	if err != nil {
		return "", "", fmt.Errorf("-target: %w", err)
	}
	if t.Scheme != "http" || t.Port() == "" {
		return "", "", fmt.Errorf("-target %q: want http://127.0.0.1:PORT/PATH", u)
	}
	host := t.Hostname()
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return "", "", fmt.Errorf("-target %q: only loopback addresses", u)
	}
	path := t.RequestURI()
	return net.JoinHostPort(ip.String(), t.Port()),
		"GET " + path + " HTTP/1.1\r\nHost: " + t.Host + "\r\nUser-Agent: waage-flood\r\nAccept: */*\r\n\r\n", nil
}

// runner holds what the connections of one run share: where to send, and the counters.
type runner struct {
	addr    string
	req     []byte
	timeout time.Duration
	dialer  net.Dialer
	budget  int64 // requests left to send (-max-requests)

	requests, ok, s429, s4xx, s5xx, other, errs, reconnects atomic.Int64
	firstErr                                                atomic.Pointer[error]
}

// worker is one connection's state and the latencies it measured.
type worker struct {
	c      net.Conn
	br     *bufio.Reader
	dialed bool // a connection was opened before: the next one is a reconnect
	lat    []time.Duration
}

func (w *worker) close() {
	if w.c != nil {
		w.c.Close()
		w.c, w.br = nil, nil
	}
}

// take reserves one request of the run's budget.
func (r *runner) take() bool { return atomic.AddInt64(&r.budget, -1) >= 0 }

func (r *runner) fail(err error) {
	r.errs.Add(1)
	r.firstErr.CompareAndSwap(nil, &err)
}

// do sends one request on w's connection, opening one first if needed, and reads the answer. It
// returns whether an answer came; a failed or closing connection is closed for the next request
// to open a new one.
func (r *runner) do(w *worker) bool {
	r.requests.Add(1)
	deadline := time.Now().Add(r.timeout)
	if w.c == nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		c, err := r.dialer.DialContext(ctx, "tcp", r.addr)
		cancel()
		if err != nil {
			r.fail(fmt.Errorf("connect: %w", err))
			return false
		}
		if w.dialed {
			r.reconnects.Add(1)
		}
		w.c, w.br, w.dialed = c, bufio.NewReaderSize(c, 4096), true
	}
	_ = w.c.SetDeadline(deadline)
	if _, err := w.c.Write(r.req); err != nil {
		w.close()
		r.fail(fmt.Errorf("write: %w", err))
		return false
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		w.close()
		r.fail(fmt.Errorf("read answer: %w", err))
		return false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		w.close()
		r.fail(fmt.Errorf("read body: %w", err))
		return false
	}
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		r.ok.Add(1)
	case s == http.StatusTooManyRequests:
		r.s429.Add(1)
	case s >= 400 && s < 500:
		r.s4xx.Add(1)
	case s >= 500:
		r.s5xx.Add(1)
	default:
		r.other.Add(1)
	}
	if resp.Close {
		w.close()
	}
	return true
}

// flood sends requests back to back on one connection until end, keeping at most keep latencies.
func (r *runner) flood(w *worker, end time.Time, keep int) {
	defer w.close()
	for time.Now().Before(end) && r.take() {
		t0 := time.Now()
		if r.do(w) {
			if len(w.lat) < keep {
				w.lat = append(w.lat, time.Since(t0))
			}
			continue
		}
		// No answer: do not spin on a proxy that refuses connections.
		time.Sleep(min(10*time.Millisecond, time.Until(end)))
	}
}

// paced sends rate requests per second on one connection, due from start until end, and returns
// how many were due. A request is sent at its time or, when the previous answer came later than
// that, at once; its latency counts from its time in the second case. Requests still due at end
// (behind a slow answer) go out until end plus the request timeout; the rest are missed.
func (r *runner) paced(w *worker, rate float64, start, end time.Time) (due int64) {
	defer w.close()
	interval := time.Duration(float64(time.Second) / rate)
	due = int64(end.Sub(start) / interval)
	for i := int64(0); i < due && r.take(); i++ {
		at := start.Add(time.Duration(i) * interval)
		now := time.Now()
		if now.After(end.Add(r.timeout)) {
			break
		}
		t0 := at
		if now.Before(at) {
			time.Sleep(at.Sub(now))
			t0 = time.Now()
		}
		if r.do(w) {
			w.lat = append(w.lat, time.Since(t0))
		}
	}
	return due
}

// writeLatencies writes lat to path in microseconds, one a line, in the order of the requests (of
// each connection in turn, in flood mode).
func writeLatencies(path string, lat []time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, d := range lat {
		fmt.Fprintln(w, d.Microseconds())
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// percentile returns the q-quantile of sorted (the nearest rank), 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
