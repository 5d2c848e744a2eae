package runtime

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
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
