package runtime

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestE2EWebSocketDemo(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "wsdemo")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	url := "ws://" + feAddr(t, rt, "web") + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for round := 0; round < 2; round++ {
		c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: newHTTPClient(t, false)})
		if err != nil {
			t.Fatalf("dial: %v (resp %v)", err, resp)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("status %d", resp.StatusCode)
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		typ, msg, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(msg) != "hello from wsdemo" {
			t.Fatalf("hello: %v %v %q", err, typ, msg)
		}
		msgs := []struct {
			typ  websocket.MessageType
			data []byte
		}{
			{websocket.MessageText, []byte("one")},
			{websocket.MessageBinary, []byte{0, 1, 2, 3, 255}},
			{websocket.MessageText, []byte(strings.Repeat("big", 100_000))},
			{websocket.MessageText, []byte("last")},
		}
		// Several messages in flight at once, then read them back in order.
		for _, m := range msgs {
			if err := c.Write(ctx, m.typ, m.data); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		for i, m := range msgs {
			typ, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if typ != m.typ || !bytes.Equal(got, m.data) {
				t.Errorf("message %d: type %v, %d bytes; want type %v, %d bytes", i, typ, len(got), m.typ, len(m.data))
			}
		}
		if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

// TestE2EUpgradeBytesAfter101 checks that bytes the server sends right behind its 101 (in the
// same segment) reach the client, and that the tunnel then works both ways and half-closes.
func TestE2EUpgradeBytesAfter101(t *testing.T) {
	t.Parallel()
	srv := startRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if !strings.EqualFold(r.Header.Get("Connection"), "upgrade") || r.Header.Get("Upgrade") != "testproto" {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad upgrade")
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: testproto\r\n\r\nWELCOME\n")
		// Echo lines upper-cased until the client half-closes, then say goodbye.
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				io.WriteString(c, "BYE\n")
				return
			}
			io.WriteString(c, strings.ToUpper(line))
		}
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	rc.write("GET /up HTTP/1.1\r\nHost: up.test\r\nConnection: Upgrade\r\nUpgrade: testproto\r\n\r\nearly\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %q", resp.StatusCode, b)
	}
	if resp.Header.Get("Upgrade") != "testproto" || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		t.Errorf("101 head: %v", resp.Header)
	}
	readLine := func() string {
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := rc.br.ReadString('\n')
		if err != nil {
			t.Fatalf("tunnel read: %v (got %q)", err, l)
		}
		return l
	}
	if l := readLine(); l != "WELCOME\n" {
		t.Fatalf("first tunnel bytes %q, want the server's WELCOME sent with the 101", l)
	}
	// "early" was sent by the client right behind its request head.
	if l := readLine(); l != "EARLY\n" {
		t.Errorf("bytes sent behind the upgrade request: %q, want EARLY", l)
	}
	rc.write("ping\n")
	if l := readLine(); l != "PING\n" {
		t.Errorf("echo %q", l)
	}
	rc.c.(*net.TCPConn).CloseWrite()
	if l := readLine(); l != "BYE\n" {
		t.Errorf("after half-close: %q", l)
	}
	if ok, extra := rc.closedWithin(3 * time.Second); !ok || len(extra) > 0 {
		t.Errorf("tunnel not closed after both sides finished: closed %v extra %q", ok, extra)
	}
}

// TestE2EUnaskedSwitch: a 101 to a request that did not ask to upgrade is refused.
func TestE2EUnaskedSwitch(t *testing.T) {
	t.Parallel()
	srv := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: evil\r\n\r\n")
		return false
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	resp, body := rc.mustDo(t, get("/", "x.test"))
	checkErrorBody(t, resp, body, 502)
}

// TestE2EUpgradeDeclined: a server that answers an upgrade request with a normal response leaves
// an ordinary HTTP connection.
func TestE2EUpgradeDeclined(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "plain")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	for i := 0; i < 3; i++ {
		resp, body := rc.mustDo(t, get("/no-ws", "u.test", "Connection: Upgrade", "Upgrade: websocket"))
		if resp.StatusCode != 200 || demoInfo(body)["path"] != "/no-ws" {
			t.Fatalf("declined upgrade %d: %d %q", i, resp.StatusCode, body)
		}
		if resp.Header.Get("Upgrade") != "" {
			t.Errorf("Upgrade field on a declined upgrade: %q", resp.Header.Get("Upgrade"))
		}
	}
	resp, body := rc.mustDo(t, get("/after", "u.test"))
	if resp.StatusCode != 200 || demoInfo(body)["path"] != "/after" {
		t.Errorf("after declined upgrades: %d %q", resp.StatusCode, body)
	}
}
