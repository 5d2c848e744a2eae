package runtime

// Shared helpers for the end-to-end tests of the HTTP/1.1 data path (e2e_*_test.go): waage runs
// in-process from a YAML string on 127.0.0.1:0, in front of real backends on loopback (the demo
// backends, small net/http servers, or raw net.Listener servers with byte-level control).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/demo"
)

// ioTimeout bounds every single network operation of the tests, so a bug hangs no test for long.
const ioTimeout = 10 * time.Second

// startWaage parses yamlText, applies it to a new runtime and shuts the runtime down at cleanup.
// Unless the YAML has its own log section, the access log is off. WAAGE_E2E_LOG=1 shows waage's
// own log on stderr.
func startWaage(t testing.TB, yamlText string) *Runtime {
	t.Helper()
	return startWaageTo(t, yamlText, nil)
}

// logBuffer collects waage's log for tests that check what it says.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startWaageLog is startWaage with waage's log (debug level) collected.
func startWaageLog(t testing.TB, yamlText string) (*Runtime, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	return startWaageTo(t, yamlText, lb), lb
}

func startWaageTo(t testing.TB, yamlText string, logTo io.Writer) *Runtime {
	t.Helper()
	if !strings.Contains(yamlText, "\nlog:") && !strings.HasPrefix(yamlText, "log:") {
		yamlText = "log: {access: \"off\"}\n" + yamlText
	}
	cfg, err := config.Parse("e2e.yaml", []byte(yamlText), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yamlText)
	}
	var outs []io.Writer
	if os.Getenv("WAAGE_E2E_LOG") != "" {
		outs = append(outs, os.Stderr)
	}
	if logTo != nil {
		outs = append(outs, logTo)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if len(outs) > 0 {
		logger = slog.New(slog.NewTextHandler(io.MultiWriter(outs...), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	rt := New(logger)
	if err := rt.Apply(cfg); err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rt.Shutdown(ctx)
	})
	return rt
}

// feAddr returns the (first) bound address of a frontend.
func feAddr(t testing.TB, rt *Runtime, name string) string {
	t.Helper()
	addrs := rt.Addrs(name)
	if len(addrs) == 0 {
		t.Fatalf("frontend %q has no listener", name)
	}
	return addrs[0].String()
}

// feAddrFamily returns the bound address of a frontend in one family ("tcp4" or "tcp6").
func feAddrFamily(t testing.TB, rt *Runtime, name string, ipv6 bool) string {
	t.Helper()
	for _, a := range rt.Addrs(name) {
		ta := a.(*net.TCPAddr)
		if (ta.IP.To4() == nil) == ipv6 {
			return a.String()
		}
	}
	t.Fatalf("frontend %q has no listener of that family (ipv6=%v): %v", name, ipv6, rt.Addrs(name))
	return ""
}

// simpleConfig is one frontend "web" on 127.0.0.1:0 with default_backend "b" over the given
// server addresses (named s1, s2, ...). extra is inserted into the backend (indented 4 spaces).
func simpleConfig(extraFrontend, extraBackend string, addrs ...string) string {
	return oneFrontendConfig("  - name: web\n    listen: [\"127.0.0.1:0\"]\n    default_backend: b\n", extraFrontend, extraBackend, addrs...)
}

// oneFrontendConfig is a configuration of one frontend (head, then extraFrontend) and backend
// "b" (extraBackend, then servers s1, s2, ... at addrs).
func oneFrontendConfig(head, extraFrontend, extraBackend string, addrs ...string) string {
	var sb strings.Builder
	sb.WriteString("frontends:\n")
	sb.WriteString(head)
	sb.WriteString(extraFrontend)
	sb.WriteString("backends:\n  - name: b\n")
	sb.WriteString(extraBackend)
	sb.WriteString("    servers:\n")
	for i, a := range addrs {
		fmt.Fprintf(&sb, "      - {name: s%d, address: %q}\n", i+1, a)
	}
	return sb.String()
}

// startDemo starts demo backends with the given names and closes them at cleanup.
func startDemo(t testing.TB, names ...string) []*demo.Backend {
	t.Helper()
	bs, err := demo.Start(context.Background(), names, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, b := range bs {
			b.Close()
		}
	})
	return bs
}

func demoAddrs(bs []*demo.Backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Addr
	}
	return out
}

// httpBackend is a net/http server on loopback that counts connections and requests.
type httpBackend struct {
	addr  string
	srv   *http.Server
	conns atomic.Int64 // accepted connections
	reqs  atomic.Int64 // requests that reached the handler
}

func startHTTPBackend(t testing.TB, h http.HandlerFunc) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{addr: ln.Addr().String()}
	b.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.reqs.Add(1)
			h(w, r)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				b.conns.Add(1)
			}
		},
		ErrorLog: nil,
	}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// rawServer is a TCP server whose handler has byte-level control over what it sends.
type rawServer struct {
	ln       net.Listener
	addr     string
	accepted atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func startRawServer(t testing.TB, handle func(c net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, addr: ln.Addr().String(), conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
				}()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				handle(c)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *rawServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// rawHTTPServer serves HTTP/1.1 requests read with http.ReadRequest (body read fully) and lets
// respond write the raw response bytes; respond returns whether to keep the connection.
func rawHTTPServer(t testing.TB, respond func(c net.Conn, r *http.Request, body []byte) bool) *rawServer {
	return startRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			if !respond(c, r, body) {
				return
			}
		}
	})
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// clientConn is a raw client connection: requests are written as given, responses read with
// http.ReadResponse. Its methods return errors so load goroutines can use them.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRawE(addr string) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	return &rawConn{c: c, br: bufio.NewReaderSize(c, 64<<10)}, nil
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	rc, err := dialRawE(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.c.Close() })
	return rc
}

func (rc *rawConn) write(s string) error {
	rc.c.SetDeadline(time.Now().Add(ioTimeout))
	_, err := io.WriteString(rc.c, s)
	return err
}

// readResp reads one response (for a request with method) and its whole body.
func (rc *rawConn) readResp(method string) (*http.Response, []byte, error) {
	rc.c.SetDeadline(time.Now().Add(ioTimeout))
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp, body, fmt.Errorf("reading body: %w", err)
	}
	return resp, body, nil
}

func (rc *rawConn) do(req string) (*http.Response, []byte, error) {
	if err := rc.write(req); err != nil {
		return nil, nil, err
	}
	method, _, _ := strings.Cut(req, " ")
	return rc.readResp(method)
}

// mustDo sends req and returns the response; it fails the test on any error.
func (rc *rawConn) mustDo(t testing.TB, req string) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := rc.do(req)
	if err != nil {
		t.Fatalf("request %q: %v", firstLine(req), err)
	}
	return resp, body
}

// closedWithin reports whether the peer closes the connection (EOF or reset, with no more data)
// within d; extra bytes read are returned.
func (rc *rawConn) closedWithin(d time.Duration) (bool, []byte) {
	rc.c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(rc.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, b
	}
	return true, b
}

// readAllRaw reads everything until the peer closes.
func (rc *rawConn) readAllRaw() ([]byte, error) {
	rc.c.SetReadDeadline(time.Now().Add(ioTimeout))
	return io.ReadAll(rc.br)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// get builds a simple request.
func get(path, host string, headers ...string) string {
	return request("GET", path, host, "", headers...)
}

// request builds a request with an optional Content-Length body; headers are "Name: value".
func request(method, path, host, body string, headers ...string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	for _, h := range headers {
		sb.WriteString(h)
		sb.WriteString("\r\n")
	}
	if body != "" || method == "POST" || method == "PUT" {
		fmt.Fprintf(&sb, "Content-Length: %d\r\n", len(body))
	}
	sb.WriteString("\r\n")
	sb.WriteString(body)
	return sb.String()
}

// demoInfo parses the demo backend's info body: "name" is the first line, then "key: value".
func demoInfo(body []byte) map[string]string {
	m := map[string]string{}
	lines := strings.Split(strings.TrimRight(string(body), "\n"), "\n")
	if len(lines) > 0 {
		m["name"] = lines[0]
	}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			k = strings.TrimSuffix(l, ":")
		}
		m[k] = v
	}
	return m
}

// newHTTPClient returns a client with its own transport and no proxy.
func newHTTPClient(t testing.TB, keepAlive bool) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 32,
		DisableCompression:  true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// checkErrorBody checks a waage-generated error response: the status, a short plain-text body
// that says why (more than the bare status line), and a matching Content-Length.
func checkErrorBody(t testing.TB, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d (body %q)", resp.StatusCode, status, body)
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	if len(body) == 0 || len(body) > 512 {
		t.Errorf("body length %d, want a short explanation: %q", len(body), body)
	}
	bare := strings.TrimSpace(string(body))
	if bare == strconv.Itoa(status)+" "+http.StatusText(status) || bare == http.StatusText(status) || bare == strconv.Itoa(status) {
		t.Errorf("body %q only repeats the status; it should say why", body)
	}
	if resp.ContentLength != int64(len(body)) {
		t.Errorf("Content-Length %d, body %d bytes", resp.ContentLength, len(body))
	}
}

// heapWatch samples HeapInuse while a transfer runs.
type heapWatch struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func watchHeap() *heapWatch {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	h := &heapWatch{base: ms.HeapInuse, stop: make(chan struct{}), done: make(chan struct{})}
	h.peak.Store(ms.HeapInuse)
	go func() {
		defer close(h.done)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tk.C:
			}
			var ms goruntime.MemStats
			goruntime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
		}
	}()
	return h
}

// finish stops sampling and returns the growth of HeapInuse over the baseline.
func (h *heapWatch) finish() (base, peak uint64) {
	close(h.stop)
	<-h.done
	return h.base, h.peak.Load()
}

// loadResult is what a background request loop saw.
type loadResult struct {
	ok   int
	errs []string
}

// backgroundLoad sends GET requests to addr on keep-alive connections until stop is called (at
// most maxReqs, at most 20s) and reports every failure (transport error or status != 200).
func backgroundLoad(addr, host, path string, maxReqs int) (stop func() loadResult) {
	var res loadResult
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(20 * time.Second)
		var rc *rawConn
		for i := 0; i < maxReqs && time.Now().Before(deadline); i++ {
			select {
			case <-quit:
				return
			default:
			}
			if rc == nil {
				var err error
				if rc, err = dialRawE(addr); err != nil {
					res.errs = append(res.errs, "dial: "+err.Error())
					continue
				}
			}
			resp, _, err := rc.do(get(path, host))
			switch {
			case err != nil:
				res.errs = append(res.errs, err.Error())
				rc.c.Close()
				rc = nil
			case resp.StatusCode != 200:
				res.errs = append(res.errs, resp.Status)
			default:
				res.ok++
			}
			if rc != nil && resp != nil && resp.Close {
				rc.c.Close()
				rc = nil
			}
		}
		if rc != nil {
			rc.c.Close()
		}
	}()
	return func() loadResult {
		close(quit)
		<-done
		return res
	}
}

// countBy counts values.
func countBy[T comparable](xs []T) map[T]int {
	m := map[T]int{}
	for _, x := range xs {
		m[x]++
	}
	return m
}

// splitHead splits a raw response into head and body at the first empty line.
func splitHead(raw []byte) (head string, body []byte) {
	i := bytes.Index(raw, []byte("\r\n\r\n"))
	if i < 0 {
		return string(raw), nil
	}
	return string(raw[:i+4]), raw[i+4:]
}
