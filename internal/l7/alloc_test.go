package l7

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
	"golang.org/x/net/http2"
)

// rawBackend answers every request on every connection with a fixed response, reading heads with
// a plain buffer, so it allocates nothing per request itself.
func rawBackend(t testing.TB, resp string) string {
	out := []byte(resp)
	return rawBackendFunc(t, func([]byte) []byte { return out })
}

// rawBackendFunc answers each request (bodyless) with what answer makes of its head, given as
// the bytes that arrived, up to and including the blank line.
func rawBackendFunc(t testing.TB, answer func(head []byte) []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 8192)
				n := 0
				for {
					k, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += k
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						out := answer(buf[:i+4])
						copy(buf, buf[i+4:n])
						n -= i + 4
						if _, err := c.Write(out); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// startProxy serves a one-backend frontend on a loopback listener and returns its address.
func startProxy(t testing.TB, servers ...string) string {
	t.Helper()
	addr, _ := startProxyServer(t, servers...)
	return addr
}

// startProxyServer is startProxy, with the server.
func startProxyServer(t testing.TB, servers ...string) (string, *Server) {
	t.Helper()
	tr := NewTransport()
	t.Cleanup(tr.Close)
	var ss []*backend.Server
	bc := config.Backend{Name: "b", Algorithm: "round_robin"}
	for _, a := range servers {
		ss = append(ss, backend.NewServer("b", a, a))
	}
	b, err := NewBackend(bc, ss, tr)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewRouter(config.Frontend{Name: "f", DefaultBackend: "b"}, map[string]*Backend{"b": b})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(&Handler{Name: "f", Router: rt, Scheme: "http"})
	go s.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), s
}

// TestProxyAllocations guards the hot path: a keep-alive GET through the proxy allocates nothing
// per request once pools are warm.
func TestProxyAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	addr, srv := startProxyServer(t, rawBackend(t, resp), rawBackend(t, resp))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0\r\nReferer: http://example.com/start/page.html\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 4096)
	do := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		got := 0
		for {
			n, err := c.Read(buf[got:])
			if err != nil {
				t.Fatal(err)
			}
			got += n
			if bytes.HasSuffix(buf[:got], []byte("hello")) {
				return
			}
		}
	}
	expectNoAllocs(t, srv, "request", do)
}

// expectNoAllocs fails the test when a proxied request (do) allocates, counted over the whole
// process once the pools are warm: without an access log, then with one in either format, as
// production runs.
func expectNoAllocs(t *testing.T, s *Server, what string, do func()) {
	t.Helper()
	check := func(with string) {
		t.Helper()
		for range 200 {
			do()
		}
		per := testing.AllocsPerRun(2000, do)
		t.Logf("%.0f allocations per %s%s", per, what, with)
		if per > 0 {
			t.Errorf("%.0f allocations per proxied %s%s; the hot path should allocate nothing", per, what, with)
		}
	}
	check("")
	for _, format := range []string{"combined", "json"} {
		h := *s.Handler()
		h.AccessLog = NewAccessLog(io.Discard, format)
		s.SetHandler(&h)
		check(" with a " + format + " access log")
		h.AccessLog.Close()
	}
}

// TestH2ProxyAllocations guards the HTTP/2 hot path the same way: a stream of an h2c client to
// an HTTP/1.1 server allocates nothing per request once the pools are warm (the stream and its
// forward are recycled, the fields go out from the stream's own arrays). The client is written
// by hand so that it allocates nothing itself: its request block is static-table entries and
// one dynamic-table entry, as a browser's or h2load's requests look after the first.
func TestH2ProxyAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
	f := startH2Front(t, config.Backend{}, rawBackend(t, resp), rawBackend(t, resp))
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	frame := func(b []byte, typ, flags byte, id uint32, payload []byte) []byte {
		n := len(payload)
		b = append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
		return append(b, payload...)
	}
	out := append([]byte(http2.ClientPreface), 0, 0, 0, 4, 0, 0, 0, 0, 0) // preface, SETTINGS
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	// GET http://x/: :method GET, :scheme http, :path / from the static table; :authority x and
	// a browser's user-agent added to the dynamic table by the first request (indexes 63 and
	// 62 then) and referenced after.
	ua := "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
	first := append([]byte{0x82, 0x86, 0x84, 0x41, 0x01, 'x', 0x7a, byte(len(ua))}, ua...)
	later := []byte{0x82, 0x86, 0x84, 0xbf, 0xbe}
	var (
		hdr  [9]byte
		win  [4]byte
		in   = make([]byte, 1<<16)
		wbuf = make([]byte, 0, 256)
		id   uint32
	)
	do := func() {
		id += 2
		block := later
		if id == 1 {
			block = first
		}
		wbuf = frame(wbuf[:0], 1, 0x5, id, block) // HEADERS, END_STREAM|END_HEADERS
		if _, err := c.Write(wbuf); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				t.Fatal(err)
			}
			n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
			typ, flags, sid := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:])&0x7fffffff
			if _, err := io.ReadFull(c, in[:n]); err != nil {
				t.Fatal(err)
			}
			switch {
			case typ == 4 && flags&1 == 0: // SETTINGS: acknowledge
				wbuf = frame(wbuf[:0], 4, 1, 0, nil)
			case typ == 6 && flags&1 == 0: // PING
				wbuf = frame(wbuf[:0], 6, 1, 0, in[:8])
			case typ == 0 && n > 0: // DATA: give the window back
				wbuf = frame(wbuf[:0], 8, 0, 0, binary.BigEndian.AppendUint32(win[:0], uint32(n)))
			case typ == 3 || typ == 7:
				t.Fatalf("stream %d: frame type %d (reset or GOAWAY)", sid, typ)
			default:
				wbuf = wbuf[:0]
			}
			if len(wbuf) > 0 {
				if _, err := c.Write(wbuf); err != nil {
					t.Fatal(err)
				}
			}
			if sid == id && flags&1 != 0 && (typ == 0 || typ == 1) {
				return // END_STREAM on our stream
			}
		}
	}
	id = ^uint32(0) // the first do makes it 1
	expectNoAllocs(t, f.s, "HTTP/2 request", do)
}
