package runtime

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestE2EManyIdleConnections keeps many keep-alive connections idle past the point where waage
// stops holding buffers for them (idle grace, and more idle connections than it keeps waiting in
// their goroutines), then uses every one of them again, then lets the idle timeout close them.
func TestE2EManyIdleConnections(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("    timeouts: {client_idle: 2s}\n", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	const n = 400
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = dialRaw(t, addr)
	}
	roundTrip := func(round int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for i, rc := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				path := fmt.Sprintf("/c%d/r%d", i, round)
				resp, body, err := rc.do(get(path, "idle.test"))
				switch {
				case err != nil:
					errs <- fmt.Sprintf("conn %d: %v", i, err)
				case resp.StatusCode != 200 || demoInfo(body)["path"] != path:
					errs <- fmt.Sprintf("conn %d: status %d, path %q, want %q", i, resp.StatusCode, demoInfo(body)["path"], path)
				}
			}()
		}
		wg.Wait()
		close(errs)
		k := 0
		for e := range errs {
			if k < 5 {
				t.Errorf("round %d: %s", round, e)
			}
			k++
		}
		if k > 0 {
			t.Fatalf("round %d: %d of %d connections failed", round, k, n)
		}
	}
	roundTrip(0)
	time.Sleep(1200 * time.Millisecond) // past the idle grace: the connections are parked
	roundTrip(1)
	roundTrip(2) // at once again, without a pause
	time.Sleep(1200 * time.Millisecond)
	// Half the clients go away while parked; the rest are used again.
	for _, rc := range conns[n/2:] {
		rc.c.Close()
	}
	conns = conns[:n/2]
	roundTrip(3)
	// Now idle until client_idle (2s) closes them all.
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open, late int
	for _, rc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			closed, extra := rc.closedWithin(5 * time.Second)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if !closed || len(extra) > 0 {
				open++
			} else if d < 1500*time.Millisecond || d > 3500*time.Millisecond {
				late++
			}
		}()
	}
	wg.Wait()
	if open > 0 || late > 0 {
		t.Errorf("idle timeout of 2s: %d connections not closed (or got bytes), %d closed far from 2s", open, late)
	}
}

// TestE2EParkedConnectionShutdown: Shutdown closes parked idle connections promptly.
func TestE2EParkedConnectionShutdown(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	conns := make([]*rawConn, 300)
	for i := range conns {
		conns[i] = dialRaw(t, addr)
		conns[i].mustDo(t, get("/", "p.test"))
	}
	time.Sleep(1200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := rt.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown with only idle connections took %v", d)
	}
	for i, rc := range conns {
		if ok, extra := rc.closedWithin(time.Second); !ok || len(extra) > 0 {
			t.Fatalf("conn %d: closed %v extra %q after Shutdown", i, ok, extra)
		}
	}
}

// TestE2EBodyStall408: a client that stops sending its request body gets 408 after client_idle.
func TestE2EBodyStall408(t *testing.T) {
	t.Parallel()
	b := expectBackend(t) // /accept reads the whole body before answering
	rt := startWaage(t, simpleConfig("    timeouts: {client_idle: 300ms}\n", "", b.addr))
	for _, tc := range []struct{ name, head, part string }{
		{"content-length", "POST /accept HTTP/1.1\r\nHost: s.test\r\nContent-Length: 100\r\n\r\n", "only ten b"},
		{"chunked", "POST /accept HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: chunked\r\n\r\n", "64\r\nonly ten b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, feAddr(t, rt, "web"))
			start := time.Now()
			rc.write(tc.head + tc.part)
			resp, body, err := rc.readResp("POST")
			d := time.Since(start)
			if err != nil {
				t.Fatalf("no response after %v: %v", d, err)
			}
			checkErrorBody(t, resp, body, 408)
			if d > 2*time.Second {
				t.Errorf("408 after %v, want about 300ms", d)
			}
		})
	}
}

// TestE2EClientAbort: clients that go away mid-download or mid-upload leave nothing broken behind.
func TestE2EClientAbort(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	for i := 0; i < 5; i++ {
		// Download: read a little of 64 MiB, then close.
		rc := dialRaw(t, addr)
		rc.write(get("/bytes/67108864", "a.test"))
		buf := make([]byte, 100_000)
		if _, err := io.ReadFull(rc.br, buf); err != nil {
			t.Fatal(err)
		}
		rc.c.Close()
		// Upload: announce 64 MiB, send a little, close.
		rc = dialRaw(t, addr)
		rc.write("POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 67108864\r\n\r\n" + strings.Repeat("u", 100_000))
		rc.c.Close()
	}
	// Everything still works, with correct bodies (no stale bytes from an aborted exchange).
	rc := dialRaw(t, addr)
	for i := 0; i < 20; i++ {
		path := fmt.Sprintf("/after%d", i)
		resp, body := rc.mustDo(t, get(path, "a.test"))
		if resp.StatusCode != 200 || demoInfo(body)["path"] != path {
			t.Fatalf("after aborts: %d %q", resp.StatusCode, body)
		}
		resp, body = rc.mustDo(t, request("POST", "/echo", "a.test", "echo-"+path))
		if resp.StatusCode != 200 || string(body) != "echo-"+path {
			t.Fatalf("after aborts: echo %d %q", resp.StatusCode, body)
		}
	}
}

// TestE2ETruncatedResponses: a server that dies mid-body must not look like a complete response
// to the client: no terminating chunk is invented, and the connection is closed.
func TestE2ETruncatedResponses(t *testing.T) {
	t.Parallel()
	srv := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		switch r.URL.Path {
		case "/chunked":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		case "/length":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
		case "/badchunk":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
			time.Sleep(50 * time.Millisecond)
		}
		return false
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	for _, path := range []string{"/chunked", "/length", "/badchunk"} {
		t.Run(path, func(t *testing.T) {
			rc := dialRaw(t, feAddr(t, rt, "web"))
			resp, body, err := rc.do(get(path, "t.test"))
			if resp == nil {
				t.Fatalf("no response head: %v", err)
			}
			if err == nil {
				t.Errorf("truncated response delivered as complete: status %d body %q", resp.StatusCode, body)
			}
			if ok, _ := rc.closedWithin(2 * time.Second); !ok {
				t.Errorf("connection left open after a truncated response")
			}
		})
	}
}

// TestE2EEarlyHints: 1xx interim responses reach HTTP/1.1 clients before the final one.
func TestE2EEarlyHints(t *testing.T) {
	t.Parallel()
	srv := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
		time.Sleep(10 * time.Millisecond)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	rt := startWaage(t, simpleConfig("", "    sticky: {cookie: WAAGE_SRV}\n", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	for i := 0; i < 2; i++ {
		rc.write(get("/", "eh.test"))
		resp, _, err := rc.readResp("GET")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 103 || resp.Header.Get("Link") != "</style.css>; rel=preload" {
			t.Fatalf("first response %d %v, want 103 with Link", resp.StatusCode, resp.Header)
		}
		if len(resp.Header.Values("Set-Cookie")) > 0 {
			t.Errorf("interim response carries Set-Cookie")
		}
		resp, body, err := rc.readResp("GET")
		if err != nil || resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("final response: %v %v %q", err, resp, body)
		}
	}
	// HTTP/1.0 clients get only the final response.
	rc10 := dialRaw(t, feAddr(t, rt, "web"))
	rc10.write("GET / HTTP/1.0\r\nHost: eh.test\r\n\r\n")
	raw, _ := rc10.readAllRaw()
	if strings.Contains(string(raw), " 103 ") || !strings.Contains(string(raw), " 200 ") {
		t.Errorf("HTTP/1.0 client got %q", raw)
	}
}

// TestE2ELargeHeads: many request fields, and large response heads, pass; a response head too
// large to parse is a 502.
func TestE2ELargeHeads(t *testing.T) {
	t.Parallel()
	srv := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		var sb strings.Builder
		sb.WriteString("HTTP/1.1 200 OK\r\n")
		n := 0
		switch r.URL.Path {
		case "/big":
			n = 40 // 40 KB
		case "/huge":
			n = 100 // 100 KB
		}
		for i := 0; i < n; i++ {
			fmt.Fprintf(&sb, "X-Resp-%d: %s\r\n", i, strings.Repeat("v", 1000))
		}
		got := len(r.Header)
		body := fmt.Sprint(got)
		fmt.Fprintf(&sb, "Content-Length: %d\r\n\r\n%s", len(body), body)
		io.WriteString(c, sb.String())
		return true
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))

	var hs []string
	for i := 0; i < 300; i++ {
		hs = append(hs, fmt.Sprintf("X-Request-%d: value-%d", i, i))
	}
	resp, body := rc.mustDo(t, get("/", "l.test", hs...))
	// 300 fields + X-Forwarded-For, -Proto, -Host, Forwarded.
	if resp.StatusCode != 200 || string(body) != "304" {
		t.Errorf("300 request fields: status %d, server saw %s fields, want 304", resp.StatusCode, body)
	}
	resp, _ = rc.mustDo(t, get("/big", "l.test"))
	if resp.StatusCode != 200 || len(resp.Header.Values("X-Resp-39")) != 1 {
		t.Errorf("40 KB response head: status %d, %d fields", resp.StatusCode, len(resp.Header))
	}
	// One 50 KB field (a big cookie) is forwarded whole.
	resp, body = rc.mustDo(t, get("/", "l.test", "Cookie: big="+strings.Repeat("c", 50_000)))
	if resp.StatusCode != 200 || string(body) != "5" {
		t.Errorf("50 KB request field: status %d, server saw %s fields", resp.StatusCode, body)
	}
	rc2 := dialRaw(t, feAddr(t, rt, "web"))
	resp, body = rc2.mustDo(t, get("/huge", "l.test"))
	checkErrorBody(t, resp, body, 502)
}

func TestE2EOptionsAsterisk(t *testing.T) {
	t.Parallel()
	srv := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(r.RequestURI), r.RequestURI)
		return true
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	resp, body := rc.mustDo(t, "OPTIONS * HTTP/1.1\r\nHost: o.test\r\n\r\n")
	if resp.StatusCode != 200 || string(body) != "*" {
		t.Errorf("OPTIONS *: status %d, server saw target %q, want *", resp.StatusCode, body)
	}
	resp, body = rc.mustDo(t, "GET * HTTP/1.1\r\nHost: o.test\r\n\r\n")
	checkErrorBody(t, resp, body, 400)
}

// TestE2EMixedConcurrentTraffic runs many kinds of exchanges at once on shared upstream pools
// (with -race it is the data race check of the data path): every answer must be the right one.
func TestE2EMixedConcurrentTraffic(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	const workers, per = 8, 120
	var wg sync.WaitGroup
	errs := make(chan string, workers*per)
	deadline := time.Now().Add(30 * time.Second)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := dialRawE(addr)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer func() { rc.c.Close() }()
			for i := 0; i < per && time.Now().Before(deadline); i++ {
				tag := fmt.Sprintf("w%d-i%d", w, i)
				var req, method, want string
				switch i % 6 {
				case 0:
					req, method = get("/"+tag, "m.test"), "GET"
				case 1:
					req, method, want = request("POST", "/echo", "m.test", tag+strings.Repeat("x", i*37)), "POST", tag+strings.Repeat("x", i*37)
				case 2:
					body := tag + "-chunked"
					req = fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: m.test\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
					method, want = "POST", body
				case 3:
					req, method = request("HEAD", "/bytes/5000", "m.test", ""), "HEAD"
				case 4:
					req, method = get("/bytes/70000", "m.test"), "GET"
				case 5:
					req, method = get("/status/204", "m.test"), "GET"
				}
				if err := rc.write(req); err != nil {
					errs <- tag + ": " + err.Error()
					return
				}
				resp, body, err := rc.readResp(method)
				if err != nil {
					errs <- tag + ": " + err.Error()
					return
				}
				switch i % 6 {
				case 0:
					if demoInfo(body)["path"] != "/"+tag {
						errs <- fmt.Sprintf("%s: got the answer for %q", tag, demoInfo(body)["path"])
					}
				case 1, 2:
					if string(body) != want {
						errs <- fmt.Sprintf("%s: echo of %d bytes, want %d", tag, len(body), len(want))
					}
				case 3:
					if resp.ContentLength != 5000 || len(body) != 0 {
						errs <- fmt.Sprintf("%s: HEAD Content-Length %d body %d", tag, resp.ContentLength, len(body))
					}
				case 4:
					if len(body) != 70000 {
						errs <- fmt.Sprintf("%s: %d bytes, want 70000", tag, len(body))
					}
				case 5:
					if resp.StatusCode != 204 {
						errs <- fmt.Sprintf("%s: status %d", tag, resp.StatusCode)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for e := range errs {
		if n < 5 {
			t.Error(e)
		}
		n++
	}
	if n > 0 {
		t.Errorf("%d failures", n)
	}
}
