package runtime

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestE2EManyRequestsOneConnection(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	for i := 0; i < 300; i++ {
		path := fmt.Sprintf("/r%d", i)
		resp, body := rc.mustDo(t, get(path, "ka.test"))
		if resp.StatusCode != 200 || demoInfo(body)["path"] != path || resp.Close {
			t.Fatalf("request %d: status %d close %v body %q", i, resp.StatusCode, resp.Close, body)
		}
	}
}

func TestE2EUpstreamReuse(t *testing.T) {
	t.Parallel()
	b := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	rt := startWaage(t, simpleConfig("", "", b.addr))
	addr := feAddr(t, rt, "web")
	rc := dialRaw(t, addr)
	for i := 0; i < 100; i++ {
		resp, body := rc.mustDo(t, get("/", "pool.test"))
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Errorf("100 sequential requests on one client connection used %d upstream connections, want 1", n)
	}
	// Sequential requests on separate client connections share the pooled upstream connection too.
	for i := 0; i < 20; i++ {
		c := dialRaw(t, addr)
		resp, _ := c.mustDo(t, get("/", "pool.test", "Connection: close"))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if ok, _ := c.closedWithin(2 * time.Second); !ok {
			t.Fatalf("client connection with Connection: close was not closed")
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Errorf("120 sequential requests used %d upstream connections, want 1", n)
	}
	if n := b.reqs.Load(); n != 120 {
		t.Errorf("backend saw %d requests, want 120", n)
	}
}

func TestE2EHTTP10(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")

	t.Run("no keep-alive closes", func(t *testing.T) {
		rc := dialRaw(t, addr)
		if err := rc.write("GET /ten HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		raw, err := rc.readAllRaw()
		if err != nil {
			t.Fatalf("connection not closed after an HTTP/1.0 response: %v (read %q)", err, raw)
		}
		head, body := splitHead(raw)
		if !strings.HasPrefix(head, "HTTP/1.1 200 ") && !strings.HasPrefix(head, "HTTP/1.0 200 ") {
			t.Fatalf("response %q", head)
		}
		if demoInfo(body)["path"] != "/ten" {
			t.Errorf("body %q", body)
		}
		if strings.Contains(strings.ToLower(head), "keep-alive") {
			t.Errorf("HTTP/1.0 response without keep-alive offers keep-alive:\n%s", head)
		}
	})
	t.Run("keep-alive kept", func(t *testing.T) {
		rc := dialRaw(t, addr)
		for i := 0; i < 3; i++ {
			if err := rc.write("GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			resp, body, err := rc.readResp("GET")
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if resp.StatusCode != 200 || demoInfo(body)["path"] != "/ka" {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
			}
			if !strings.EqualFold(resp.Header.Get("Connection"), "keep-alive") {
				t.Errorf("request %d: Connection = %q, want keep-alive", i, resp.Header.Get("Connection"))
			}
		}
	})
	t.Run("host-less HTTP/1.0 routes to default", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.write("GET / HTTP/1.0\r\n\r\n")
		raw, _ := rc.readAllRaw()
		if !strings.Contains(string(raw), " 200 ") {
			t.Errorf("response %q", raw)
		}
	})
}

func TestE2EPipelining(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	// The first request is the slowest, so answers out of order would show.
	paths := []string{"/slow?ms=150", "/p1", "/slow?ms=50", "/p3", "/status/204", "/p5", "/echo", "/p7"}
	var all strings.Builder
	for _, p := range paths {
		if p == "/echo" {
			all.WriteString(request("POST", p, "pipe.test", "pipelined-body"))
			continue
		}
		all.WriteString(get(p, "pipe.test"))
	}
	if err := rc.write(all.String()); err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		method := "GET"
		if p == "/echo" {
			method = "POST"
		}
		resp, body, err := rc.readResp(method)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		switch p {
		case "/status/204":
			if resp.StatusCode != 204 {
				t.Errorf("response %d: status %d, want 204", i, resp.StatusCode)
			}
		case "/echo":
			if string(body) != "pipelined-body" {
				t.Errorf("response %d: echo %q", i, body)
			}
		default:
			if got := demoInfo(body)["path"]; got != p {
				t.Errorf("response %d is for %q, want %q", i, got, p)
			}
		}
	}
}

func TestE2EClientIdleTimeout(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("    timeouts: {client_idle: 300ms}\n", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	rc := dialRaw(t, addr)
	// Requests 150 ms apart keep the connection.
	for i := 0; i < 4; i++ {
		if i > 0 {
			time.Sleep(150 * time.Millisecond)
		}
		resp, _ := rc.mustDo(t, get("/", "idle.test"))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	start := time.Now()
	closed, extra := rc.closedWithin(3 * time.Second)
	d := time.Since(start)
	if !closed {
		t.Fatalf("idle connection still open after 3s (client_idle 300ms)")
	}
	if len(extra) > 0 {
		t.Errorf("idle close sent bytes: %q", extra)
	}
	if d < 200*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("idle connection closed after %v, want about 300ms", d)
	}
	// A connection that never sends anything is closed too, without a response.
	rc2 := dialRaw(t, addr)
	start = time.Now()
	closed, extra = rc2.closedWithin(3 * time.Second)
	if !closed || time.Since(start) > 1500*time.Millisecond {
		t.Errorf("silent connection: closed %v after %v", closed, time.Since(start))
	}
	if len(extra) > 0 {
		t.Errorf("silent connection got bytes: %q", extra)
	}
}

// TestE2EUpstreamCloseFraming: servers that close their connection after a response (Connection:
// close, HTTP/1.0) do not disturb the client's keep-alive connection, and their connections are
// not reused.
func TestE2EUpstreamCloseFraming(t *testing.T) {
	t.Parallel()
	srv := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		switch r.URL.Path {
		case "/close":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nclose")
		case "/http10":
			io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhttp10")
		case "/http10-eof":
			io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\nto-eof")
		}
		return false
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	for i := 0; i < 3; i++ {
		for _, tc := range []struct{ path, body string }{{"/close", "close"}, {"/http10", "http10"}} {
			resp, body := rc.mustDo(t, get(tc.path, "u.test"))
			if resp.StatusCode != 200 || string(body) != tc.body {
				t.Fatalf("%s: %d %q", tc.path, resp.StatusCode, body)
			}
			if resp.Close {
				t.Errorf("%s: the server's close was passed on to the keep-alive client", tc.path)
			}
		}
	}
	if n := srv.accepted.Load(); n != 6 {
		t.Errorf("server accepted %d connections for 6 requests, want 6 (no reuse of closed ones)", n)
	}
	resp, body := rc.mustDo(t, get("/http10-eof", "u.test"))
	if resp.StatusCode != 200 || string(body) != "to-eof" || !resp.Close {
		t.Errorf("HTTP/1.0 read-to-close: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
}

func TestE2EPoolDisabled(t *testing.T) {
	t.Parallel()
	b := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	rt := startWaage(t, simpleConfig("", "    pool: {max_idle: -1}\n", b.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	for i := 0; i < 20; i++ {
		resp, body := rc.mustDo(t, get("/", "np.test"))
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := b.conns.Load(); n != 20 {
		t.Errorf("pool.max_idle -1: %d upstream connections for 20 requests, want 20", n)
	}
}
