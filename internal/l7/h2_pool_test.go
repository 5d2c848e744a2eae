package l7

import (
	"bufio"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// scriptedBackend is an HTTP/1.1 server written by hand, so tests control every byte of the answer.
// answer gets each request (body read) with its number on the connection (0 first) and writes
// the response; it returns false to close the connection.
type scriptedBackend struct {
	addr   string
	conns  atomic.Int32  // connections accepted
	reqs   atomic.Int32  // requests read
	closed chan struct{} // a value each time a connection ends
}

func startScriptedBackend(t *testing.T, answer func(c net.Conn, r *http.Request, body string, n int) bool) *scriptedBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &scriptedBackend{addr: ln.Addr().String(), closed: make(chan struct{}, 100)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rb.conns.Add(1)
			go func() {
				defer func() {
					c.Close()
					select {
					case rb.closed <- struct{}{}:
					default:
					}
				}()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, err := io.ReadAll(r.Body)
					if err != nil {
						return
					}
					rb.reqs.Add(1)
					if !answer(c, r, string(body), n) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return rb
}

func getBody(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

// TestH2PooledReuse: HTTP/2 streams to an HTTP/1.1 server share one pooled keep-alive
// connection, and the request head carries waage's forwarding fields without hop-by-hop ones.
func TestH2PooledReuse(t *testing.T) {
	rb := startScriptedBackend(t, func(c net.Conn, r *http.Request, body string, n int) bool {
		msg := fmt.Sprintf("n=%d te=%q xff=%s xfp=%s xfh=%s fwd=%s cert=%q ua=%q", n, r.Header.Get("Te"), r.Header.Get("X-Forwarded-For"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("Forwarded"), r.Header.Get(ClientCertField), r.UserAgent())
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nKeep-Alive: timeout=5\r\n\r\n%s", len(msg), msg)
		return true
	})
	f := startH2Front(t, config.Backend{}, rb.addr)
	c := h2cClient()
	for i := range 5 {
		req, _ := http.NewRequest("GET", "http://"+f.addr+"/x", nil)
		req.Header.Set("X-Forwarded-For", "10.0.0.1")
		req.Header.Set(ClientCertField, "CN=forged")
		req.Header.Set("Te", "trailers")
		req.Header.Set("User-Agent", "ua/1")
		resp, body := getBody(t, c, req)
		want := fmt.Sprintf(`n=%d te="trailers" xff=10.0.0.1, 127.0.0.1 xfp=http xfh=%s fwd=for=127.0.0.1;host="%s";proto=http cert="" ua="ua/1"`, i, f.addr, f.addr)
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
		if resp.Header.Get("Keep-Alive") != "" || resp.ContentLength != int64(len(want)) {
			t.Fatalf("response head %v (length %d): hop-by-hop field passed or length lost", resp.Header, resp.ContentLength)
		}
	}
	if n := rb.conns.Load(); n != 1 {
		t.Fatalf("server saw %d connections for 5 sequential requests, want 1 (pooled)", n)
	}
}

// TestH2PooledBodies: request bodies of known and unknown length, and responses framed every way
// HTTP/1.1 frames them: chunked with trailers (passed as HTTP/2 trailers), after 100 Continue,
// until close (then the connection is not reused), and bodyless ones.
func TestH2PooledBodies(t *testing.T) {
	rb := startScriptedBackend(t, func(c net.Conn, r *http.Request, body string, n int) bool {
		info := fmt.Sprintf("%s %s len=%d te=%v body=%s", r.Method, r.URL.Path, r.ContentLength, r.TransferEncoding, body)
		switch r.URL.Path {
		case "/chunked":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n%x\r\n%s\r\n5;ext=1\r\n,more\r\n0\r\nX-Sum: 42\r\n\r\n", len(info), info)
		case "/continue":
			fmt.Fprintf(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(info), info)
		case "/close":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\n\r\n%s", info)
			return false
		case "/big":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat("x", 1<<20))
		case "/204":
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		case "/head":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
		default:
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(info), info)
		}
		return true
	})
	f := startH2Front(t, config.Backend{}, rb.addr)
	c := h2cClient()
	base := "http://" + f.addr

	req, _ := http.NewRequest("POST", base+"/known", strings.NewReader("hello"))
	if _, body := getBody(t, c, req); body != "POST /known len=5 te=[] body=hello" {
		t.Fatalf("known length: %q", body)
	}
	// A body of unknown length goes chunked; an io.Reader that is not a known type hides it.
	req, _ = http.NewRequest("PUT", base+"/unknown", io.MultiReader(strings.NewReader("one,"), strings.NewReader("two")))
	if _, body := getBody(t, c, req); body != "PUT /unknown len=-1 te=[chunked] body=one,two" {
		t.Fatalf("unknown length: %q", body)
	}
	resp, body := getBody(t, c, mustReq("GET", base+"/chunked"))
	if body != "GET /chunked len=0 te=[] body=,more" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("chunked: %q trailer %v", body, resp.Trailer)
	}
	resp, body = getBody(t, c, mustReq("GET", base+"/continue"))
	if resp.StatusCode != 200 || body != "GET /continue len=0 te=[] body=" {
		t.Fatalf("after 1xx: %d %q", resp.StatusCode, body)
	}
	conns := rb.conns.Load()
	resp, body = getBody(t, c, mustReq("GET", base+"/close"))
	if resp.StatusCode != 200 || body != "GET /close len=0 te=[] body=" {
		t.Fatalf("until close: %d %q", resp.StatusCode, body)
	}
	getBody(t, c, mustReq("GET", base+"/after"))
	if rb.conns.Load() != conns+1 {
		t.Fatalf("connections %d -> %d: the one closed after its body must be replaced, once", conns, rb.conns.Load())
	}
	resp, body = getBody(t, c, mustReq("GET", base+"/big"))
	if resp.StatusCode != 200 || body != strings.Repeat("x", 1<<20) {
		t.Fatalf("1 MiB body: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = getBody(t, c, mustReq("GET", base+"/204"))
	if resp.StatusCode != 204 || body != "" {
		t.Fatalf("204: %d %q", resp.StatusCode, body)
	}
	resp, body = getBody(t, c, mustReq("HEAD", base+"/head"))
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != 1234 {
		t.Fatalf("HEAD: %d %q length %d, want the server's length", resp.StatusCode, body, resp.ContentLength)
	}
	// The bodyless answers left the connection clean: the next request uses it.
	conns = rb.conns.Load()
	getBody(t, c, mustReq("GET", base+"/again"))
	if rb.conns.Load() != conns {
		t.Fatalf("a new connection after bodyless answers: they were not pooled")
	}
}

func mustReq(method, url string) *http.Request {
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		panic(err)
	}
	return r
}

// TestH2PooledStaleRetry: a pooled connection the server closed while idle costs no request of
// an idempotent, bodiless kind (sent again on a fresh connection); a POST on it is not replayed.
func TestH2PooledStaleRetry(t *testing.T) {
	rb := startScriptedBackend(t, func(c net.Conn, r *http.Request, body string, n int) bool {
		// Claims keep-alive, then closes without saying so once the answer is out.
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(20 * time.Millisecond)
		return false
	})
	f := startH2Front(t, config.Backend{}, rb.addr)
	c := h2cClient()
	for i := range 3 {
		resp, body := getBody(t, c, mustReq("GET", "http://"+f.addr+"/"))
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("GET %d on a stale pooled connection: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond) // the server has closed the pooled connection
	}
	req, _ := http.NewRequest("POST", "http://"+f.addr+"/", nil)
	resp, _ := getBody(t, c, req)
	if resp.StatusCode != 502 && resp.StatusCode != 200 {
		t.Fatalf("POST on a stale pooled connection: %d", resp.StatusCode)
	}
}

// TestH2PooledConnectRetry: a server that refuses connections sends the stream to another.
func TestH2PooledConnectRetry(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	rb := startScriptedBackend(t, func(c net.Conn, r *http.Request, body string, n int) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlive")
		return true
	})
	f := startH2Front(t, config.Backend{}, dead, rb.addr)
	c := h2cClient()
	for i := range 4 {
		req, _ := http.NewRequest("POST", "http://"+f.addr+"/", strings.NewReader("b"))
		resp, body := getBody(t, c, req)
		if resp.StatusCode != 200 || body != "live" {
			t.Fatalf("request %d: %d %q, want the live server's answer", i, resp.StatusCode, body)
		}
	}
}

// TestH2PooledResponseTimeout: a server that does not answer within timeouts.response is a 504,
// and its connection is closed.
func TestH2PooledResponseTimeout(t *testing.T) {
	rb := startScriptedBackend(t, func(c net.Conn, r *http.Request, body string, n int) bool {
		// No answer: wait for waage to give up and close the connection.
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		c.Read(make([]byte, 1))
		return false
	})
	bc := config.Backend{}
	bc.Timeouts.Response = config.Duration(200 * time.Millisecond)
	f := startH2Front(t, bc, rb.addr)
	start := time.Now()
	resp, _ := getBody(t, h2cClient(), mustReq("GET", "http://"+f.addr+"/"))
	if resp.StatusCode != 504 || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("got %d after %v, want 504 after about 200ms", resp.StatusCode, time.Since(start))
	}
	select {
	case <-rb.closed:
	case <-time.After(2 * time.Second):
		t.Fatal("the server's connection stayed open after the timeout")
	}
}

// TestH2PooledClientCancel: a client that cancels its stream closes the server connection at
// once instead of leaving it waiting for an answer, or pooling it.
func TestH2PooledClientCancel(t *testing.T) {
	rb := startScriptedBackend(t, func(c net.Conn, r *http.Request, body string, n int) bool {
		// No answer: wait for the next request or for waage to close the connection.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1))
		return false
	})
	f := startH2Front(t, config.Backend{}, rb.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+f.addr+"/", nil)
	start := time.Now()
	_, err := h2cClient().Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the client's own deadline", err)
	}
	select {
	case <-rb.closed:
	case <-time.After(3 * time.Second):
		t.Fatal("the server connection stayed open after the client canceled")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the server connection closed %v after the request, not at the cancel", d)
	}
	for deadline := time.Now().Add(2 * time.Second); f.s.Stats.Status[4].Load() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("4xx count %d: the canceled stream must count once, as 499", f.s.Stats.Status[4].Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestH2PooledTLSBackend: a backend with tls and protocol http1 is reached over TLS on pooled
// connections (verified with tls.ca), chunked answers and their trailers included; a server whose
// certificate cannot be verified counts as one that could not be connected to.
func TestH2PooledTLSBackend(t *testing.T) {
	var conns atomic.Int32
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		fmt.Fprintf(w, "%s tls=%v %s", r.Proto, r.TLS != nil, r.URL.Path)
		w.(http.Flusher).Flush()
		w.Header().Set("X-Sum", "7")
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.StartTLS()
	defer ts.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	srvAddr := strings.TrimPrefix(ts.URL, "https://")
	f := startH2Front(t, config.Backend{TLS: &config.ClientTLS{CA: ca, ServerName: "example.com"}}, srvAddr)
	c := h2cClient()
	for i := range 3 {
		resp, body := getBody(t, c, mustReq("GET", fmt.Sprintf("http://%s/t%d", f.addr, i)))
		if want := fmt.Sprintf("HTTP/1.1 tls=true /t%d", i); body != want || resp.Trailer.Get("X-Sum") != "7" {
			t.Fatalf("got %q trailer %v, want %q with X-Sum", body, resp.Trailer, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("server saw %d TLS connections for 3 sequential requests, want 1 (pooled)", n)
	}
	bad := startH2Front(t, config.Backend{TLS: &config.ClientTLS{}}, srvAddr)
	resp, _ := getBody(t, c, mustReq("GET", "http://"+bad.addr+"/"))
	if resp.StatusCode != 502 {
		t.Fatalf("unverifiable server: status %d, want 502", resp.StatusCode)
	}
}

// TestFillHeader: a parsed response's fields become an HTTP/2 response header with canonical
// names, repeated fields in order, Content-Length from the framing, and dropped and framing
// fields left out.
func TestFillHeader(t *testing.T) {
	fields := []hdr{
		{name: []byte("content-type"), value: []byte("text/html")},
		{name: []byte("Set-Cookie"), value: []byte("a=1")},
		{name: []byte("x-custom-THING"), value: []byte("v")},
		{name: []byte("SET-COOKIE"), value: []byte("b=2")},
		{name: []byte("Content-Length"), value: []byte("99"), kind: hContentLength},
		{name: []byte("Trailer"), value: []byte("X-T"), kind: hTrailer},
		{name: []byte("X-Hop"), value: []byte("secret"), drop: true},
		{name: []byte("X-Empty"), value: []byte("")},
		{name: []byte("grpc-status"), value: []byte("0")},
	}
	hd := http.Header{}
	ct, grpc := fillHeader(hd, fields, true, 1234)
	want := http.Header{
		"Content-Type":   {"text/html"},
		"Set-Cookie":     {"a=1", "b=2"},
		"X-Custom-Thing": {"v"},
		"X-Empty":        {""},
		"Grpc-Status":    {"0"},
		"Content-Length": {"1234"},
	}
	if !reflect.DeepEqual(hd, want) || ct != "text/html" || !grpc {
		t.Fatalf("fillHeader = %v, %q, %v; want %v", hd, ct, grpc, want)
	}
	hd = http.Header{}
	fillHeader(hd, fields[:1], false, -1)
	if len(hd) != 1 || hd.Get("Content-Type") != "text/html" {
		t.Fatalf("without a length: %v", hd)
	}
}

type fieldList [][2]string

func (l *fieldList) AddField(name, value []byte) {
	*l = append(*l, [2]string{string(name), string(value)})
}

func (l *fieldList) SetContentLength(n int64) {
	l.AddField([]byte("content-length"), fmt.Append(nil, n))
}

// TestAddFields: addFields passes the fields fillHeader would, in order, with Content-Length
// from the framing, and tells server-sent events and grpc-status apart.
func TestAddFields(t *testing.T) {
	fields := []hdr{
		{name: []byte("Content-Type"), value: []byte(" Text/Event-Stream ; charset=utf-8")},
		{name: []byte("Content-Length"), value: []byte("99"), kind: hContentLength},
		{name: []byte("X-Hop"), value: []byte("secret"), drop: true},
		{name: []byte("Grpc-Status"), value: []byte("0")},
	}
	var got fieldList
	sse, grpc := addFields(&got, fields, true, 7)
	want := fieldList{{"Content-Type", " Text/Event-Stream ; charset=utf-8"}, {"Grpc-Status", "0"}, {"content-length", "7"}}
	if !reflect.DeepEqual(got, want) || !sse || !grpc {
		t.Fatalf("addFields = %v, %v, %v; want %v", got, sse, grpc, want)
	}
	for ct, want := range map[string]bool{"text/event-stream": true, "text/event-stream;x": true, "text/html": false, "": false, "text/event-streams": false} {
		if isEventStream(ct) != want || isEventStream([]byte(ct)) != want {
			t.Errorf("isEventStream(%q) != %v", ct, want)
		}
	}
}

// TestH2FieldsToHTTP1: an HTTP/2 stream's fields reach an HTTP/1.1 server as they arrived, lower
// case, the cookie crumbs a client split (Go's does) joined into one field (RFC 9113 section
// 8.2.3), Expect: 100-continue answered by waage and not passed; the sticky cookie and a
// header hash key, which read the request's header map, still pin the client.
func TestH2FieldsToHTTP1(t *testing.T) {
	answer := func(name string) func(c net.Conn, r *http.Request, body string, n int) bool {
		return func(c net.Conn, r *http.Request, body string, n int) bool {
			var head strings.Builder
			r.Header.Write(&head)
			msg := name + "\n" + head.String()
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
			return true
		}
	}
	// The raw head, as bytes: http.ReadRequest would canonicalise the names.
	echo := rawBackendFunc(t, func(head []byte) []byte {
		return fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(head), head)
	})
	f := startH2Front(t, config.Backend{}, echo)
	c := h2cClient()
	req, _ := http.NewRequest("GET", "http://"+f.addr+"/fields", nil)
	req.Header.Set("Cookie", "a=1; b=2; c=3")
	req.Header.Set("X-Custom", "v1")
	req.Header.Add("X-Custom", "v2")
	_, head := getBody(t, c, req)
	if strings.Count(head, "cookie: ") != 1 || !strings.Contains(head, "\r\ncookie: a=1; b=2; c=3\r\n") {
		t.Fatalf("cookies not joined into one field:\n%s", head)
	}
	if !strings.Contains(head, "\r\nx-custom: v1\r\nx-custom: v2\r\n") || strings.Count(head, "\r\nHost: ") != 1 || strings.Contains(head, "\r\nhost:") {
		t.Fatalf("fields not passed as they arrived:\n%s", head)
	}

	// Sticky cookie and header hash with HTTP/2 clients.
	s1 := startScriptedBackend(t, answer("s1"))
	s2 := startScriptedBackend(t, answer("s2"))
	sticky := startH2Front(t, config.Backend{Sticky: &config.Sticky{Cookie: "srv"}}, s1.addr, s2.addr)
	resp, body := getBody(t, c, mustReq("GET", "http://"+sticky.addr+"/"))
	first, _, _ := strings.Cut(body, "\n")
	var pin *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "srv" {
			pin = ck
		}
	}
	if pin == nil {
		t.Fatalf("no sticky cookie in %v", resp.Header)
	}
	for range 6 {
		req := mustReq("GET", "http://"+sticky.addr+"/")
		req.Header.Set("Cookie", "other=x; srv="+pin.Value)
		_, body := getBody(t, c, req)
		if got, _, _ := strings.Cut(body, "\n"); got != first {
			t.Fatalf("sticky request went to %s, pinned to %s", got, first)
		}
	}
	hashed := startH2Front(t, config.Backend{Algorithm: "hash", HashKey: "header:x-user"}, s1.addr, s2.addr)
	seen := map[string]string{}
	for i := range 12 {
		user := fmt.Sprintf("u%d", i%4)
		req := mustReq("GET", "http://"+hashed.addr+"/")
		req.Header.Set("X-User", user)
		_, body := getBody(t, c, req)
		got, _, _ := strings.Cut(body, "\n")
		if prev, ok := seen[user]; ok && prev != got {
			t.Fatalf("user %s went to %s and %s", user, prev, got)
		}
		seen[user] = got
	}
}

// TestH2RecycleUnderChurn: many streams at once on a few connections, to HTTP/1.1 servers, with
// bodies, slow answers and clients that give up midway, while streams and forwards are reused:
// every answer that arrives is its own request's, and nothing races (run with -race).
func TestH2RecycleUnderChurn(t *testing.T) {
	answer := func(c net.Conn, r *http.Request, body string, n int) bool {
		if r.URL.Query().Get("slow") != "" {
			time.Sleep(30 * time.Millisecond)
		}
		msg := r.URL.RequestURI() + "|" + r.Header.Get("X-Req") + "|" + body
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Echo: %s\r\n\r\n%s", len(msg), r.Header.Get("X-Req"), msg)
		return true
	}
	f := startH2Front(t, config.Backend{}, startScriptedBackend(t, answer).addr, startScriptedBackend(t, answer).addr)
	var wg sync.WaitGroup
	var ok, canceled atomic.Int32
	errs := make(chan error, 16)
	for cn := range 4 {
		c := h2cClient()
		for w := range 25 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 12 {
					id := fmt.Sprintf("c%d-w%d-%d", cn, w, i)
					uri := "/r/" + id
					var body io.Reader
					method := "GET"
					switch i % 4 {
					case 1:
						method, body = "POST", strings.NewReader("body-"+id)
					case 2:
						uri += "?slow=1"
					}
					ctx, cancel := context.WithCancel(context.Background())
					if i%4 == 3 {
						uri += "?slow=1"
						time.AfterFunc(10*time.Millisecond, cancel) // gives up before the answer
					}
					req, _ := http.NewRequestWithContext(ctx, method, "http://"+f.addr+uri, body)
					req.Header.Set("X-Req", id)
					resp, err := c.Do(req)
					if err != nil {
						cancel()
						if i%4 == 3 {
							canceled.Add(1)
							continue
						}
						select {
						case errs <- fmt.Errorf("%s: %v", id, err):
						default:
						}
						return
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					cancel()
					if i%4 == 3 && err != nil {
						canceled.Add(1)
						continue
					}
					want := uri + "|" + id + "|"
					if method == "POST" {
						want += "body-" + id
					}
					if err != nil || string(b) != want || resp.Header.Get("X-Echo") != id {
						select {
						case errs <- fmt.Errorf("%s: %q (X-Echo %q) %v, want %q", id, b, resp.Header.Get("X-Echo"), err, want):
						default:
						}
						return
					}
					ok.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d answers checked, %d requests given up midway", ok.Load(), canceled.Load())
	if ok.Load() < 900 {
		t.Errorf("only %d answers", ok.Load())
	}
}
