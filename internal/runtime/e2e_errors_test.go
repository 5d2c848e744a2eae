package runtime

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/demo"
)

// badServer answers every request with raw bytes chosen by the request path.
func badServer(t *testing.T) *rawServer {
	return rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		switch r.URL.Path {
		case "/garbage":
			io.WriteString(c, "garbage that is not HTTP\r\n\r\n")
		case "/midhead":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-")
		case "/nothing":
		case "/dup-cl":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok")
		case "/nul":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 2\r\n\r\nok")
		case "/badversion":
			io.WriteString(c, "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
		case "/badstatus":
			io.WriteString(c, "HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok")
		case "/cl-and-te":
			// RFC 9112 6.3: Transfer-Encoding wins; the length must not reach the client.
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
			return true
		}
		return false
	})
}

func TestE2EUpstreamErrors(t *testing.T) {
	t.Parallel()
	srv := badServer(t)
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	addr := feAddr(t, rt, "web")
	for _, tc := range []struct {
		name, method, path string
		status             int
	}{
		{"garbage GET", "GET", "/garbage", 502},
		{"garbage POST", "POST", "/garbage", 502},
		{"closes mid-head POST", "POST", "/midhead", 502},
		{"closes mid-head GET", "GET", "/midhead", 502},
		{"closes without response POST", "POST", "/nothing", 502},
		{"closes without response GET", "GET", "/nothing", 502},
		{"duplicate Content-Length in response", "GET", "/dup-cl", 502},
		{"NUL in response field", "GET", "/nul", 502},
		{"HTTP/2.0 status line", "GET", "/badversion", 502},
		{"bad status code", "GET", "/badstatus", 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			body := ""
			if tc.method == "POST" {
				body = "payload"
			}
			resp, rb := rc.mustDo(t, request(tc.method, tc.path, "e.test", body))
			checkErrorBody(t, resp, rb, tc.status)
		})
	}
	t.Run("Content-Length and chunked in response", func(t *testing.T) {
		rc := dialRaw(t, addr)
		resp, body := rc.mustDo(t, get("/cl-and-te", "e.test"))
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if resp.Header.Get("Content-Length") != "" {
			t.Errorf("Content-Length %q forwarded beside chunked", resp.Header.Get("Content-Length"))
		}
	})
}

func TestE2ENoServer503(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b")
	rt := startWaage(t, `
frontends:
  - name: web
    listen: ["127.0.0.1:0"]
    default_backend: b
backends:
  - name: b
    servers:
      - {name: s1, address: "`+bs[0].Addr+`", state: maintenance}
      - {name: s2, address: "`+bs[1].Addr+`", state: maintenance}
`)
	rc := dialRaw(t, feAddr(t, rt, "web"))
	resp, body := rc.mustDo(t, get("/", "x.test"))
	checkErrorBody(t, resp, body, 503)
	if !strings.Contains(string(body), "backend b has no healthy server") {
		t.Errorf("503 body %q does not say that no server is available", body)
	}
	// A bodiless request's 503 keeps the connection.
	resp, body = rc.mustDo(t, get("/", "x.test"))
	checkErrorBody(t, resp, body, 503)
	if bs[0].Requests()+bs[1].Requests() != 0 {
		t.Errorf("servers in maintenance got requests")
	}
	// Back to ready: served again.
	rt.Server("b", "s1").SetState(backend.Ready)
	resp, _ = rc.mustDo(t, get("/", "x.test"))
	if resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "a" {
		t.Errorf("after s1 ready: %d from %q", resp.StatusCode, resp.Header.Get("X-Served-By"))
	}
}

func TestE2EResponseTimeout504(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "slow")
	rt := startWaage(t, simpleConfig("", "    timeouts: {response: 300ms}\n", demoAddrs(bs)...))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	start := time.Now()
	resp, body := rc.mustDo(t, get("/slow?ms=3000", "x.test"))
	d := time.Since(start)
	checkErrorBody(t, resp, body, 504)
	if d < 250*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("504 after %v, want about 300ms", d)
	}
	// A fast answer within the timeout is fine.
	rc2 := dialRaw(t, feAddr(t, rt, "web"))
	resp, body = rc2.mustDo(t, get("/slow?ms=50", "x.test"))
	if resp.StatusCode != 200 {
		t.Errorf("fast request: %d %q", resp.StatusCode, body)
	}
}

func TestE2EConnectRefused(t *testing.T) {
	t.Parallel()
	rt := startWaage(t, simpleConfig("", "", closedAddr(t), closedAddr(t)))
	for _, method := range []string{"GET", "POST"} {
		rc := dialRaw(t, feAddr(t, rt, "web"))
		body := ""
		if method == "POST" {
			body = "data"
		}
		resp, rb := rc.mustDo(t, request(method, "/", "x.test", body))
		if resp.StatusCode != 502 && resp.StatusCode != 503 {
			t.Errorf("%s: status %d, want 502 or 503", method, resp.StatusCode)
			continue
		}
		checkErrorBody(t, resp, rb, resp.StatusCode)
	}
}

func TestE2EClientHeaderTimeout408(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("    timeouts: {client_header: 300ms}\n", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")

	t.Run("half a head", func(t *testing.T) {
		rc := dialRaw(t, addr)
		start := time.Now()
		rc.write("GET / HTTP/1.1\r\nHost: x.test\r\n")
		resp, body, err := rc.readResp("GET")
		d := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		checkErrorBody(t, resp, body, 408)
		if d < 250*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("408 after %v, want about 300ms", d)
		}
		if ok, _ := rc.closedWithin(2 * time.Second); !ok {
			t.Errorf("connection not closed after 408")
		}
	})
	t.Run("slowloris one byte at a time", func(t *testing.T) {
		rc := dialRaw(t, addr)
		start := time.Now()
		rc.write("GET / HTTP/1.1\r\nHost: x.test\r\nX-Slow: ")
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for i := 0; i < 60; i++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := rc.c.Write([]byte("a")); err != nil {
					return
				}
			}
		}()
		resp, body, err := rc.readResp("GET")
		d := time.Since(start)
		if err != nil {
			t.Fatalf("after %v: %v", d, err)
		}
		checkErrorBody(t, resp, body, 408)
		if d > 1500*time.Millisecond {
			t.Errorf("slowloris head answered after %v; client_header should bound the whole head (300ms)", d)
		}
	})
	t.Run("second request on a keep-alive connection", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.mustDo(t, get("/", "x.test"))
		time.Sleep(400 * time.Millisecond) // idle (60s default) is not the header timeout
		rc.write("GET / HTTP/1.1\r\n")
		resp, body, err := rc.readResp("GET")
		if err != nil {
			t.Fatal(err)
		}
		checkErrorBody(t, resp, body, 408)
	})
}

func TestE2EHeaderTooLarge431(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	big := "GET / HTTP/1.1\r\nHost: x.test\r\nX-Big: " + strings.Repeat("b", 100_000) + "\r\n\r\n"
	go rc.c.Write([]byte(big)) // waage may stop reading before all of it is written
	resp, body, err := rc.readResp("GET")
	if err != nil {
		t.Fatalf("no 431 response: %v", err)
	}
	checkErrorBody(t, resp, body, 431)
	if bs[0].Requests() != 0 {
		t.Errorf("oversized request reached the server")
	}
}

// badRequests are requests that must be refused at the edge.
var badRequests = []struct {
	name   string
	raw    string
	status int
}{
	{"both Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: bad.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"Transfer-Encoding then Content-Length", "POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
	{"duplicate Content-Length", "POST / HTTP/1.1\r\nHost: bad.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400},
	{"Content-Length list", "POST / HTTP/1.1\r\nHost: bad.test\r\nContent-Length: 5, 5\r\n\r\nhello", 400},
	{"Content-Length with sign", "POST / HTTP/1.1\r\nHost: bad.test\r\nContent-Length: +5\r\n\r\nhello", 400},
	{"Content-Length not a number", "POST / HTTP/1.1\r\nHost: bad.test\r\nContent-Length: 0x5\r\n\r\nhello", 400},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: bad.test\r\nX-A: a\r\n  folded\r\n\r\n", 400},
	{"obs-fold with tab", "GET / HTTP/1.1\r\nHost: bad.test\r\nX-A: a\r\n\tfolded\r\n\r\n", 400},
	{"whitespace before first field", "GET / HTTP/1.1\r\n Host: bad.test\r\n\r\n", 400},
	{"bad chunk size", "POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk size overflow", "POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400},
	{"negative chunk size", "POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk lines with bare LF", "POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n", 400},
	{"chunk data longer than its size", "POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400},
	{"space before colon", "GET / HTTP/1.1\r\nHost: bad.test\r\nX-A : v\r\n\r\n", 400},
	{"space in field name", "GET / HTTP/1.1\r\nHost: bad.test\r\nX A: v\r\n\r\n", 400},
	{"empty field name", "GET / HTTP/1.1\r\nHost: bad.test\r\n: v\r\n\r\n", 400},
	{"NUL in field value", "GET / HTTP/1.1\r\nHost: bad.test\r\nX-A: a\x00b\r\n\r\n", 400},
	{"CR in field value", "GET / HTTP/1.1\r\nHost: bad.test\r\nX-A: a\rb\r\n\r\n", 400},
	{"missing Host on HTTP/1.1", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400},
	{"two Host fields", "GET / HTTP/1.1\r\nHost: bad.test\r\nHost: other.test\r\n\r\n", 400},
	{"Host with userinfo", "GET / HTTP/1.1\r\nHost: user@bad.test\r\n\r\n", 400},
	{"Host with space", "GET / HTTP/1.1\r\nHost: bad .test\r\n\r\n", 400},
	{"duplicate Transfer-Encoding", "POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"control character in target", "GET /a\x01b HTTP/1.1\r\nHost: bad.test\r\n\r\n", 400},
	{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: bad.test\r\n\r\n", 400},
	{"HTTP/0.9 request line", "GET /\r\n\r\n", 400},
	{"lower-case protocol", "GET / http/1.1\r\nHost: bad.test\r\n\r\n", 400},
	{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: bad.test\r\n\r\n", 505},
	{"HTTP/3.0 request line", "GET / HTTP/3.0\r\nHost: bad.test\r\n\r\n", 505},
	{"Transfer-Encoding gzip", "POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: gzip\r\n\r\nxxxxx", 501},
	{"Transfer-Encoding gzip, chunked", "POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
	{"unknown expectation", "GET / HTTP/1.1\r\nHost: bad.test\r\nExpect: something\r\n\r\n", 417},
}

// startGoodBad runs waage with host good.test routed to demo backend "good" and everything else
// to "bad", whose request count must stay 0 when only refused requests go there.
func startGoodBad(t *testing.T) ([]*demo.Backend, string) {
	bs := startDemo(t, "good", "bad")
	rt := startWaage(t, `
frontends:
  - name: web
    listen: ["127.0.0.1:0"]
    routes:
      - {name: good, match: {host: good.test}, backend: good}
    default_backend: bad
backends:
  - {name: good, servers: [{name: s1, address: "`+bs[0].Addr+`"}]}
  - {name: bad, servers: [{name: s1, address: "`+bs[1].Addr+`"}]}
`)
	return bs, feAddr(t, rt, "web")
}

func TestE2EBadRequests(t *testing.T) {
	t.Parallel()
	bs, addr := startGoodBad(t)
	stop := backgroundLoad(addr, "good.test", "/", 5000)
	for _, tc := range badRequests {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			resp, body, err := rc.do(tc.raw)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			checkErrorBody(t, resp, body, tc.status)
			if !resp.Close {
				t.Errorf("a refused request should close the connection (Connection: close)")
			}
			if ok, extra := rc.closedWithin(2 * time.Second); !ok || len(extra) > 0 {
				t.Errorf("after the error: closed %v, extra bytes %q", ok, extra)
			}
		})
	}
	res := stop()
	if len(res.errs) > 0 || res.ok == 0 {
		t.Errorf("background traffic: %d ok, %d errors: %q", res.ok, len(res.errs), res.errs[:min(len(res.errs), 5)])
	}
	if n := bs[1].Requests(); n != 0 {
		t.Errorf("%d refused requests reached the server", n)
	}
	t.Logf("background traffic: %d requests ok", res.ok)
}

// TestE2EBadRequestsConcurrent sends every bad request many times concurrently beside good
// traffic on the same frontend.
func TestE2EBadRequestsConcurrent(t *testing.T) {
	t.Parallel()
	bs, addr := startGoodBad(t)
	var stops []func() loadResult
	for i := 0; i < 3; i++ {
		stops = append(stops, backgroundLoad(addr, "good.test", "/", 3000))
	}
	errc := make(chan string, 1000)
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for round := 0; round < 5; round++ {
				for _, tc := range badRequests {
					rc, err := dialRawE(addr)
					if err != nil {
						errc <- tc.name + ": " + err.Error()
						continue
					}
					resp, _, err := rc.do(tc.raw)
					rc.c.Close()
					if err != nil {
						errc <- tc.name + ": " + err.Error()
					} else if resp.StatusCode != tc.status {
						errc <- fmt.Sprintf("%s: status %d", tc.name, resp.StatusCode)
					}
				}
			}
		}()
	}
	for w := 0; w < 4; w++ {
		<-done
	}
	close(errc)
	var seen []string
	counts := map[string]int{}
	for e := range errc {
		if counts[e] == 0 {
			seen = append(seen, e)
		}
		counts[e]++
	}
	for _, e := range seen {
		t.Errorf("bad request: %s (%d times)", e, counts[e])
	}
	for i, stop := range stops {
		res := stop()
		if len(res.errs) > 0 || res.ok == 0 {
			t.Errorf("background loop %d: %d ok, %d errors: %q", i, res.ok, len(res.errs), res.errs[:min(len(res.errs), 5)])
		}
	}
	if n := bs[1].Requests(); n != 0 {
		t.Errorf("%d refused requests reached the server", n)
	}
}
