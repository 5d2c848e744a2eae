package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestRead(t *testing.T) {
	payload := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range validCases {
		hn := tc.n
		if hn == 0 {
			hn = len(tc.in)
		}
		stream := append(append([]byte{}, tc.in[:hn]...), payload...)
		readers := map[string]func() io.Reader{
			"whole":    func() io.Reader { return bytes.NewReader(stream) },
			"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
			"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
			"data err": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
		}
		for rname, mk := range readers {
			for _, size := range []int{0, 16, 232, 8192} {
				r := mk()
				h, rest, err := Read(r, make([]byte, size))
				if err != nil {
					t.Errorf("%s/%s/buf %d: %v", tc.name, rname, size, err)
					continue
				}
				if h != tc.want {
					t.Errorf("%s/%s: got %+v, want %+v", tc.name, rname, h, tc.want)
				}
				after, _ := io.ReadAll(r)
				if got := string(rest) + string(after); got != payload {
					t.Errorf("%s/%s: payload after header = %q, want %q", tc.name, rname, got, payload)
				}
				if tc.want.Version == 2 && len(rest) != 0 {
					t.Errorf("%s/%s: read %d bytes past a v2 header", tc.name, rname, len(rest))
				}
				if len(rest)+hn > MaxV1Len && tc.want.Version == 1 {
					t.Errorf("%s/%s: read %d bytes for a v1 header", tc.name, rname, len(rest)+hn)
				}
			}
		}
	}
}

// TestReadUsesBuf checks that a big enough caller buffer is used as is, so a server can pool
// buffers and read headers without allocating.
func TestReadUsesBuf(t *testing.T) {
	buf := make([]byte, 232)
	in := []byte("PROXY TCP4 10.0.0.1 192.168.1.2 12345 443\r\nhello")
	_, rest, err := Read(bytes.NewReader(in), buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "hello" || &rest[:1][0] != &buf[43] {
		t.Errorf("rest %q does not alias buf", rest)
	}
	r := bytes.NewReader(nil)
	if a := testing.AllocsPerRun(100, func() {
		r.Reset(in)
		Read(r, buf)
	}); a != 0 {
		t.Errorf("Read: %v allocs", a)
	}
}

func TestReadErrors(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", io.EOF},
		{"truncated v1", "PROXY TCP4 1.2.3.4", io.ErrUnexpectedEOF},
		{"truncated v2", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x01", io.ErrUnexpectedEOF},
		{"http", "GET / HTTP/1.1\r\n\r\n", ErrInvalid},
		{"v1 too long", "PROXY UNKNOWN " + strings.Repeat("x", 500), ErrInvalid},
		{"v2 too long", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff" + strings.Repeat("x", 70000), ErrInvalid},
	}
	for _, tc := range cases {
		for _, one := range []bool{false, true} {
			var r io.Reader = strings.NewReader(tc.in)
			if one {
				r = iotest.OneByteReader(r)
			}
			_, _, err := Read(r, nil)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s (one byte %v): err = %v, want %v", tc.name, one, err, tc.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "proxyproto: ") {
				t.Errorf("%s: err %q lacks the package prefix", tc.name, err)
			}
		}
	}
	if _, _, err := Read(iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader("PROXY"))), nil); !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("timeout: err = %v", err)
	}
	if _, _, err := Read(emptyReader{}, nil); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("empty reads: err = %v", err)
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

// TestReadPipe reads over a synchronous net.Pipe, where a Read that asked for more than the
// header would block until the client sent more: the v2 read must stop at the header's end.
func TestReadPipe(t *testing.T) {
	for _, tc := range validCases {
		if tc.want.Version != 2 || tc.n != 0 {
			continue
		}
		client, server := net.Pipe()
		go func() {
			client.Write(tc.in)
			client.Write([]byte("hello")) // blocks until the server reads it
			client.Close()
		}()
		server.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, rest, err := Read(server, make([]byte, 232))
		if err != nil || h != tc.want || len(rest) != 0 {
			t.Errorf("%s: got %+v, rest %q, %v", tc.name, h, rest, err)
		}
		after, _ := io.ReadAll(server)
		if string(after) != "hello" {
			t.Errorf("%s: payload %q", tc.name, after)
		}
		server.Close()
	}
	// v1 over a pipe: whatever Read took past the CRLF comes back in rest.
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		client.Write([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 65535 80\r\nhello"))
		client.Close()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, rest, err := Read(server, nil)
	if err != nil || h != tcp6 {
		t.Fatalf("v1: got %+v, %v", h, err)
	}
	after, _ := io.ReadAll(server)
	if got := string(rest) + string(after); got != "hello" {
		t.Errorf("v1 payload %q", got)
	}
}

func TestAccept(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	remote := netip.MustParseAddrPort("10.1.1.1:4000")
	local := netip.MustParseAddrPort("10.2.2.2:443")
	for _, tc := range []struct {
		name    string
		remote  netip.AddrPort
		in      string
		wantErr error
		client  string
		dst     string
		rest    string
	}{
		{"proxy v1", remote, "PROXY TCP4 192.0.2.1 198.51.100.1 5555 80\r\nGET", nil, "192.0.2.1:5555", "198.51.100.1:80", "GET"},
		{"unknown keeps the connection's addresses", remote, "PROXY UNKNOWN\r\n", nil, "10.1.1.1:4000", "10.2.2.2:443", ""},
		{"mapped remote is trusted", netip.MustParseAddrPort("[::ffff:10.1.1.1]:4000"), "PROXY UNKNOWN\r\n", nil, "[::ffff:10.1.1.1]:4000", "10.2.2.2:443", ""},
		{"untrusted", netip.MustParseAddrPort("192.0.2.9:1"), "PROXY TCP4 192.0.2.1 198.51.100.1 5555 80\r\n", ErrUntrusted, "", "", ""},
		{"no header", remote, "GET / HTTP/1.1\r\n\r\n", ErrInvalid, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, dst, rest, err := Accept(strings.NewReader(tc.in), make([]byte, 256), trusted, tc.remote, local)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || client.String() != tc.client || dst.String() != tc.dst || string(rest) != tc.rest {
				t.Errorf("Accept = %s %s %q %v; want %s %s %q", client, dst, rest, err, tc.client, tc.dst, tc.rest)
			}
		})
	}
}
