package runtime

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestPartialHeadIsNotRetried: a server that sends part of a response head and closes has
// answered, however badly: the client gets 502 and the request is not sent again, even a GET.
func TestPartialHeadIsNotRetried(t *testing.T) {
	srv := startRawServer(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Le")
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr, srv.addr))
	resp, body := dialRaw(t, feAddr(t, rt, "web")).mustDo(t, get("/", "p.test"))
	if resp.StatusCode != 502 {
		t.Fatalf("status %d %q, want 502", resp.StatusCode, body)
	}
	if n := srv.accepted.Load(); n != 1 {
		t.Errorf("the server was contacted %d times, want 1 (no retry after response bytes)", n)
	}
}

// TestStuckServerDuringUpload: a server that stops reading a large body and never answers does
// not hold the client forever: the send times out (client_idle) and the answer waits at most the
// response timeout, then 504.
func TestStuckServerDuringUpload(t *testing.T) {
	hold := make(chan struct{})
	srv := startRawServer(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		<-hold
	})
	t.Cleanup(func() { close(hold) }) // runs before the server's own cleanup waits for this handler
	rt := startWaage(t, simpleConfig("    timeouts: {client_idle: 300ms}\n", "    timeouts: {response: 300ms}\n", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	const size = 64 << 20
	go func() {
		fmt.Fprintf(rc.c, "POST /upload HTTP/1.1\r\nHost: s.test\r\nContent-Length: %d\r\n\r\n", size)
		buf := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(buf) {
			if _, err := rc.c.Write(buf); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	resp, body, err := rc.readResp("POST")
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if resp.StatusCode != 504 {
		t.Errorf("status %d %q, want 504", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answer took %v", d)
	}
}
