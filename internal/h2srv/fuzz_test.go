package h2srv

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// memConn is a connection whose client sends in and reads nothing back.
type memConn struct {
	in  *bytes.Reader
	out int
}

func (c *memConn) Read(p []byte) (int, error) {
	if c.in.Len() == 0 {
		return 0, io.EOF
	}
	// Short reads, so frames straddle reads.
	if len(p) > 7 {
		p = p[:len(p)/2+3]
	}
	return c.in.Read(p)
}
func (c *memConn) Write(p []byte) (int, error)      { c.out += len(p); return len(p), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzSeeds are client byte streams (after the preface) that exercise every frame type.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	mk := func(write func(fr *http2.Framer, block func(kv ...string) []byte)) {
		var out, hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		block := func(kv ...string) []byte {
			hb.Reset()
			for i := 0; i+1 < len(kv); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
			}
			return append([]byte(nil), hb.Bytes()...)
		}
		fr := http2.NewFramer(&out, nil)
		fr.AllowIllegalWrites = true
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
		write(fr, block)
		seeds = append(seeds, out.Bytes())
	}
	get := []string{":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "/x?y=1"}
	post := []string{":method", "POST", ":scheme", "https", ":authority", "a.test", ":path", "/up", "content-length", "5", "trailer", "x-t"}
	mk(func(fr *http2.Framer, b func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b(get...), EndStream: true, EndHeaders: true})
		fr.WriteWindowUpdate(1, 100)
		fr.WriteWindowUpdate(0, 100)
		fr.WritePing(false, [8]byte{1})
	})
	mk(func(fr *http2.Framer, b func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b(post...), EndHeaders: true})
		fr.WriteData(1, false, []byte("hel"))
		fr.WriteDataPadded(1, false, []byte("lo"), []byte{0, 0, 0})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b("x-t", "v"), EndStream: true, EndHeaders: true})
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
	})
	mk(func(fr *http2.Framer, b func(...string) []byte) {
		blk := b(append(get, "cookie", "a=1", "cookie", "b=2")...)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: blk[:4], Priority: http2.PriorityParam{StreamDep: 1, Weight: 9}})
		fr.WriteContinuation(3, false, blk[4:8])
		fr.WriteContinuation(3, true, blk[8:])
		fr.WritePriority(5, http2.PriorityParam{StreamDep: 3})
		fr.WriteRSTStream(3, http2.ErrCodeCancel)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: b(get...), EndHeaders: true, PadLength: 4})
		fr.WriteData(7, true, nil)
		fr.WriteGoAway(7, http2.ErrCodeNo, []byte("bye"))
	})
	mk(func(fr *http2.Framer, b func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b(":method", "CONNECT", ":authority", "a.test:443"), EndHeaders: true})
		fr.WriteData(1, false, []byte("tunnel"))
		fr.WriteRawFrame(0x20, 0, 0, []byte("unknown"))
		fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: b(get...), EndHeaders: true})
	})
	return seeds
}

// FuzzFrames feeds arbitrary bytes after the client preface to a connection: it must neither
// panic nor hang, whatever the frames say. The seeds run as a regular test.
func FuzzFrames(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	cfg := &Config{StreamWindow: 100, MaxHeaderListSize: 1024, MaxQueuedControl: 50, MaxEmptyFrames: 20}
	h := HandlerFunc(func(s *Stream) {
		r := s.Request()
		io.Copy(io.Discard, r.Body)
		s.Header().Set("Content-Type", "text/plain")
		if r.Method == "POST" {
			s.WriteHeader(201, false)
		}
		s.Write(bytes.Repeat([]byte("x"), 300))
		s.Close(http.Header{"X-Done": {"1"}})
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append([]byte(clientPreface), data...)
		done := make(chan struct{})
		go func() {
			ServeConn(&memConn{in: bytes.NewReader(in)}, cfg, h)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("connection still served 10s after its input ended")
		}
	})
}

// FuzzParseURL: the stream's URL parse gives what url.ParseRequestURI gives, for every path.
func FuzzParseURL(f *testing.F) {
	for _, p := range []string{"/", "/a/b?x=1&y", "/a?", "/a??", "/a?b?c", "*", "/a b", "/a%20b?q",
		"/a#f", "//x/y", "/a;b,c=d@e:f$g&h+i", "/ä", "/a!b", "/a'b(c)*", "/a?\x01", "/a\x7f", "a/b",
		"", "/~user/x.y-z_w", "/a?x=%zz", "/%zz"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		s := &Stream{path: p}
		got, gerr := s.parseURL()
		want, werr := url.ParseRequestURI(p)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: error %v, url.ParseRequestURI's %v", p, gerr, werr)
		}
		if gerr == nil && *got != *want {
			t.Fatalf("%q: %#v, url.ParseRequestURI gives %#v", p, *got, *want)
		}
	})
}
