package demo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// startOne starts one backend for a test and closes it when the test ends.
func startOne(t *testing.T, name string) *Backend {
	t.Helper()
	bs, err := Start(t.Context(), []string{name}, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = bs[0].Close() })
	return bs[0]
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(body)
}

func TestStartDefaults(t *testing.T) {
	bs, err := Start(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != DefaultCount {
		t.Fatalf("got %d backends, want %d", len(bs), DefaultCount)
	}
	seen := map[string]bool{}
	for i, b := range bs {
		t.Cleanup(func() { _ = b.Close() })
		if want := fmt.Sprintf("demo-%d", i+1); b.Name != want {
			t.Errorf("backend %d: name %q, want %q", i, b.Name, want)
		}
		host, port, err := net.SplitHostPort(b.Addr)
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("backend %d: addr %q, want 127.0.0.1 with a real port", i, b.Addr)
		}
		if seen[b.Addr] {
			t.Errorf("backend %d: addr %q used twice", i, b.Addr)
		}
		seen[b.Addr] = true
		resp, body := get(t, b.URL()+"/", nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, b.Name+"\n") {
			t.Errorf("backend %d: GET / = %d %q", i, resp.StatusCode, body)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

func TestStartNamesAndAddrs(t *testing.T) {
	port := freePort(t)
	bs, err := Start(t.Context(), []string{"alpha", ""}, []string{":" + port, "", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		t.Cleanup(func() { _ = b.Close() })
	}
	if len(bs) != 3 {
		t.Fatalf("got %d backends, want 3", len(bs))
	}
	if bs[0].Name != "alpha" || bs[1].Name != "demo-2" || bs[2].Name != "demo-3" {
		t.Errorf("names = %q %q %q", bs[0].Name, bs[1].Name, bs[2].Name)
	}
	if want := "127.0.0.1:" + port; bs[0].Addr != want {
		t.Errorf("addr = %q, want %q (empty host means loopback)", bs[0].Addr, want)
	}
}

func TestStartPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	free := "127.0.0.1:" + freePort(t)
	_, err = Start(t.Context(), nil, []string{free, ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), `"demo-2"`) {
		t.Fatalf("Start on a used port: err = %v, want an error naming demo-2", err)
	}
	// The first backend must have been closed again: its port is free.
	ln2, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("first backend still listening after Start failed: %v", err)
	}
	ln2.Close()
}

func TestInfo(t *testing.T) {
	b := startOne(t, "demo-1")
	resp, body := get(t, b.URL()+"/some/path?q=1", map[string]string{
		"Host":              "app.example.com",
		"X-Forwarded-For":   "203.0.113.7",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "app.example.com",
		"Forwarded":         "for=203.0.113.7;proto=https",
		"X-Request-Start":   "t=1",
		"X-Request-Id":      "abc",
		"X-Other":           "not shown",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Served-By"); got != "demo-1" {
		t.Errorf("X-Served-By = %q", got)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}
	for _, want := range []string{
		"demo-1\n",
		"method: GET\n",
		"path: /some/path?q=1\n",
		"host: app.example.com\n",
		"x-forwarded-for: 203.0.113.7\n",
		"x-forwarded-proto: https\n",
		"x-forwarded-host: app.example.com\n",
		"forwarded: for=203.0.113.7;proto=https\n",
		"x-request-id: abc\nx-request-start: t=1\n", // sorted
	} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if !strings.HasPrefix(body, "demo-1\n") {
		t.Errorf("body does not start with the name:\n%s", body)
	}
	if strings.Contains(body, "not shown") {
		t.Errorf("body shows an unlisted header:\n%s", body)
	}
}

// TestInfoRawPath checks that the backend reports an unclean path as sent instead of redirecting,
// so proxy tests can see what was forwarded.
func TestInfoRawPath(t *testing.T) {
	b := startOne(t, "demo-1")
	conn, err := net.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET //admin/../x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "path: //admin/../x\n") {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
}

func TestHealthz(t *testing.T) {
	b := startOne(t, "demo-1")
	resp, body := get(t, b.URL()+"/healthz", nil)
	if resp.StatusCode != 200 || body != "ok" {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
}

func TestStatus(t *testing.T) {
	b := startOne(t, "demo-1")
	tests := []struct {
		name string
		path string
		want int
		body bool
	}{
		{name: "ok", path: "/status/200", want: 200, body: true},
		{name: "no content", path: "/status/204", want: 204},
		{name: "not found", path: "/status/404", want: 404, body: true},
		{name: "unavailable", path: "/status/503", want: 503, body: true},
		{name: "too low", path: "/status/100", want: 400, body: true},
		{name: "too high", path: "/status/600", want: 400, body: true},
		{name: "not a number", path: "/status/abc", want: 400, body: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, b.URL()+tt.path, nil)
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if (body != "") != tt.body {
				t.Errorf("body %q, want body: %v", body, tt.body)
			}
			if resp.Header.Get("X-Served-By") != "demo-1" {
				t.Errorf("X-Served-By missing")
			}
		})
	}
}

func TestSlow(t *testing.T) {
	b := startOne(t, "demo-1")
	start := time.Now()
	resp, body := get(t, b.URL()+"/slow?ms=150", nil)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("answered after %v, want >= 150ms", d)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "demo-1\n") {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	for _, bad := range []string{"", "x", "-1"} {
		resp, _ := get(t, b.URL()+"/slow?ms="+bad, nil)
		if resp.StatusCode != 400 {
			t.Errorf("ms=%q: status %d, want 400", bad, resp.StatusCode)
		}
	}
}

// TestSlowHuge checks the cap does not overflow and that Close ends a sleeping handler at once.
func TestSlowHuge(t *testing.T) {
	bs, err := Start(t.Context(), nil, []string{""})
	if err != nil {
		t.Fatal(err)
	}
	b := bs[0]
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get(b.URL() + "/slow?ms=9223372036854775807")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("answered at once (err %v): huge ms overflowed", err)
	default:
	}
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v with a sleeping handler", d)
	}
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("client still waiting after Close")
	}
}

func TestBytes(t *testing.T) {
	b := startOne(t, "demo-1")
	for _, n := range []int{0, 1, 63, 32 * 1024, 100_000, 1 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			resp, body := get(t, fmt.Sprintf("%s/bytes/%d", b.URL(), n), nil)
			if resp.StatusCode != 200 || len(body) != n || resp.ContentLength != int64(n) {
				t.Fatalf("status %d, %d bytes, Content-Length %d; want 200, %d", resp.StatusCode, len(body), resp.ContentLength, n)
			}
			const line = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
			if n >= len(line) && body[:len(line)] != line {
				t.Errorf("body starts %q", body[:len(line)])
			}
		})
	}
	for _, bad := range []string{"-1", "x", ""} {
		resp, _ := get(t, b.URL()+"/bytes/"+bad, nil)
		if resp.StatusCode != 400 {
			t.Errorf("/bytes/%s: status %d, want 400", bad, resp.StatusCode)
		}
	}
	// The cap: only the headers are read, the body is dropped unread by closing.
	resp, err := http.Head(b.URL() + "/bytes/99999999999999")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != MaxBytes {
		t.Errorf("capped Content-Length = %d, want %d", resp.ContentLength, MaxBytes)
	}
}

func TestEcho(t *testing.T) {
	b := startOne(t, "demo-1")
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch} {
		payload := bytes.Repeat([]byte(method), 50_000)
		req, _ := http.NewRequestWithContext(t.Context(), method, b.URL()+"/echo", bytes.NewReader(payload))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, payload) || resp.ContentLength != int64(len(payload)) {
			t.Errorf("%s: %d bytes back (err %v, Content-Length %d), want %d", method, len(got), err, resp.ContentLength, len(payload))
		}
	}
}

// TestEchoStreaming sends a chunked body piece by piece and reads each piece back before sending
// the next: the echo must not wait for the whole body.
func TestEchoStreaming(t *testing.T) {
	b := startOne(t, "demo-1")
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, b.URL()+"/echo", pr)
	respc := make(chan *http.Response, 1)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			errc <- err
			return
		}
		respc <- resp
	}()
	if _, err := pw.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	select {
	case resp = <-respc:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("no response head while the body is still open")
	}
	defer resp.Body.Close()
	for _, piece := range []string{"first", "second", "third"} {
		if piece != "first" {
			if _, err := pw.Write([]byte(piece)); err != nil {
				t.Fatal(err)
			}
		}
		buf := make([]byte, len(piece))
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != piece {
			t.Fatalf("read back %q (err %v), want %q", buf, err, piece)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Errorf("after end of body: %q, %v", rest, err)
	}
}

func TestWebSocket(t *testing.T) {
	b := startOne(t, "demo-2")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+b.Addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if got := resp.Header.Get("X-Served-By"); got != "demo-2" {
		t.Errorf("X-Served-By = %q", got)
	}
	typ, msg, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageText || string(msg) != "hello from demo-2" {
		t.Fatalf("greeting: %v %q %v", typ, msg, err)
	}
	tests := []struct {
		name string
		typ  websocket.MessageType
		msg  []byte
	}{
		{name: "text", typ: websocket.MessageText, msg: []byte("ping")},
		{name: "binary", typ: websocket.MessageBinary, msg: []byte{0, 1, 2, 255}},
		{name: "large", typ: websocket.MessageBinary, msg: bytes.Repeat([]byte("x"), 200_000)},
	}
	for _, tt := range tests {
		if err := c.Write(ctx, tt.typ, tt.msg); err != nil {
			t.Fatalf("%s: write: %v", tt.name, err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != tt.typ || !bytes.Equal(got, tt.msg) {
			t.Fatalf("%s: echo: %v, %d bytes, %v", tt.name, typ, len(got), err)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
}

// TestCloseEndsWebSocket checks that Close reaches hijacked connections too, which http.Server.Close
// alone does not.
func TestCloseEndsWebSocket(t *testing.T) {
	bs, err := Start(t.Context(), nil, []string{""})
	if err != nil {
		t.Fatal(err)
	}
	b := bs[0]
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+b.Addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on an open WebSocket")
	}
	if _, _, err := c.Read(ctx); err == nil {
		t.Error("WebSocket still open after Close")
	}
}

func TestCloseAndContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	bs, err := Start(ctx, nil, []string{"", ""})
	if err != nil {
		t.Fatal(err)
	}
	// Close is idempotent.
	if err := bs[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := bs[0].Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", bs[0].Addr, time.Second); err == nil {
		t.Error("still accepting after Close")
	}
	// Ending the context closes the rest.
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", bs[1].Addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting 5s after the context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := bs[1].Close(); err != nil {
		t.Fatalf("Close after context end: %v", err)
	}
}

func TestRequestsCounter(t *testing.T) {
	b := startOne(t, "demo-1")
	for range 5 {
		get(t, b.URL()+"/healthz", nil)
	}
	if got := b.Requests(); got != 5 {
		t.Errorf("Requests() = %d, want 5", got)
	}
}
