package h2srv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// echoHandler answers with the request body, its SHA-256 and the request's trailers (with
// "Echo-" before their names) as response trailers.
func echoHandler(s *Stream) {
	r := s.Request()
	h := sha256.New()
	s.Header().Set("Content-Type", "application/octet-stream")
	s.Header().Set("Trailer", "Body-Sha256")
	if err := s.WriteHeader(200, false); err != nil {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return
		}
	}
	tr := http.Header{"Body-Sha256": {fmt.Sprintf("%x", h.Sum(nil))}}
	for k, vs := range r.Trailer {
		tr["Echo-"+k] = vs
	}
	s.Close(tr)
}

func TestGET(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
			r := s.Request()
			s.Header().Set("X-Got", r.Method+" "+r.URL.Path+" "+r.URL.RawQuery+" "+r.Host+" "+r.Proto+" "+r.Header.Get("Cookie"))
			s.Header().Set("Connection", "close") // connection-specific: never sent
			s.Header().Set("Content-Length", "3")
			s.Write([]byte("abc"))
		}), useTLS)
		c := h2cClient()
		url := "http://" + ts.addr
		if useTLS {
			c = &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.pool}}}
			url = "https://" + ts.addr
		}
		req, _ := http.NewRequest("GET", url+"/a/b?x=1", nil)
		req.Host = "www.example.test"
		req.Header.Add("Cookie", "a=1")
		req.Header.Add("Cookie", "b=2")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "abc" || resp.StatusCode != 200 || resp.ContentLength != 3 {
			t.Fatalf("tls=%v: %d %q %v", useTLS, resp.StatusCode, body, err)
		}
		if got, want := resp.Header.Get("X-Got"), "GET /a/b x=1 www.example.test HTTP/2.0 a=1; b=2"; got != want {
			t.Errorf("request seen as %q, want %q", got, want)
		}
		if resp.Header.Get("Connection") != "" {
			t.Errorf("Connection field sent")
		}
	}
}

// TestConcurrentStreams: many streams at once on one connection, each answered in full.
func TestConcurrentStreams(t *testing.T) {
	var running, peak atomic.Int32
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		running.Add(-1)
		fmt.Fprintf(s, "stream %s", s.Request().URL.Path)
	}), false)
	tr := h2cTransport()
	c := &http.Client{Timeout: 20 * time.Second, Transport: tr}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get("http://" + ts.addr + "/" + strconv.Itoa(i))
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != "stream /"+strconv.Itoa(i) {
				errs <- fmt.Errorf("%d: %q %v", i, b, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if peak.Load() < 20 {
		t.Errorf("at most %d streams ran at once", peak.Load())
	}
	if n := ts.stats.Streams.Load(); n != 200 {
		t.Errorf("Stats.Streams = %d", n)
	}
}

// TestBigBodiesBothWays: a 16 MiB upload echoed back as it arrives, over windows much smaller
// than the body, with trailers both ways.
func TestBigBodiesBothWays(t *testing.T) {
	cfg := &Config{StreamWindow: 64 << 10, ConnWindow: 128 << 10}
	ts := startServer(t, cfg, HandlerFunc(echoHandler), false)
	data := make([]byte, 16<<20)
	rand.Read(data)
	want := fmt.Sprintf("%x", sha256.Sum256(data))
	pr, pw := io.Pipe()
	go func() {
		for p := data; len(p) > 0; {
			n := min(len(p), 100_000)
			if _, err := pw.Write(p[:n]); err != nil {
				return
			}
			p = p[n:]
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+ts.addr+"/echo", pr)
	req.Trailer = http.Header{"Client-Trailer": nil}
	req.Trailer.Set("Client-Trailer", "tv")
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	if resp.Trailer.Get("Body-Sha256") != want {
		t.Errorf("trailer Body-Sha256 = %q", resp.Trailer.Get("Body-Sha256"))
	}
	if resp.Trailer.Get("Echo-Client-Trailer") != "tv" {
		t.Errorf("request trailer not seen: %v", resp.Trailer)
	}
}

// TestSendFlowControl: the response waits for the client's WINDOW_UPDATEs and never exceeds its
// windows; a SETTINGS change of the initial window applies to the open stream.
func TestSendFlowControl(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		s.Write(body)
		s.Close(nil)
	}), false)
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
	rc.fr.WriteWindowUpdate(0, 1<<20) // the connection window is not what is tested
	rc.get(1, true)
	got := 0
	window := 1000
	ended := false
	for !ended {
		f := rc.read()
		switch f := f.(type) {
		case *http2.DataFrame:
			got += len(f.Data())
			window -= len(f.Data())
			if window < 0 {
				t.Fatalf("DATA beyond the stream window: %d over", -window)
			}
			ended = f.StreamEnded()
			if window == 0 && !ended {
				if got == 1000 {
					// Raise the initial window: +4000 for the open stream.
					rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 5000})
					window += 4000
				} else {
					rc.fr.WriteWindowUpdate(1, 20000)
					window += 20000
				}
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("unexpected %v", f)
		}
	}
	if got != len(body) {
		t.Fatalf("got %d bytes, want %d", got, len(body))
	}
}

// TestClientStopsReading: a client that stops reading is cut off by the write timeout; the
// handler's write fails instead of blocking forever.
func TestClientStopsReading(t *testing.T) {
	writeErr := make(chan error, 1)
	cfg := &Config{WriteTimeout: 300 * time.Millisecond}
	ts := startServer(t, cfg, HandlerFunc(func(s *Stream) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := s.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
	}), false)
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	rc.fr.WriteWindowUpdate(0, 1<<31-1-65535)
	rc.get(1, true)
	select {
	case err := <-writeErr:
		if err == nil {
			t.Fatal("write succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's write still blocks 10s after the client stopped reading")
	}
	waitFor(t, "WriteTimeouts", func() bool { return ts.stats.WriteTimeouts.Load() == 1 })
}

// TestResetMidBody: a client RST_STREAM while the request body streams ends the handler's body
// read with an error and cancels its context; other streams go on.
func TestResetMidBody(t *testing.T) {
	readErr := make(chan error, 1)
	ctxDone := make(chan struct{})
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		r := s.Request()
		if r.URL.Path == "/other" {
			io.WriteString(s, "other ok")
			return
		}
		_, err := io.Copy(io.Discard, r.Body)
		readErr <- err
		<-r.Context().Done()
		close(ctxDone)
	}), false)
	rc := dialRaw(t, ts.addr)
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: rc.block(
		":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/up")})
	rc.fr.WriteData(1, false, make([]byte, 10000))
	time.Sleep(20 * time.Millisecond)
	rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	select {
	case err := <-readErr:
		var se StreamError
		if !errors.As(err, &se) || se.Code != ErrCodeCancel || !se.Remote {
			t.Fatalf("body read error %v, want the client's CANCEL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("body read still blocked after RST_STREAM")
	}
	select {
	case <-ctxDone:
	case <-time.After(5 * time.Second):
		t.Fatal("request context not canceled")
	}
	// Data in flight for the reset stream is ignored; the connection serves on.
	rc.fr.WriteData(1, false, make([]byte, 100))
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true, BlockFragment: rc.block(
		":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/other")})
	f := rc.expect("DATA on stream 3", func(f http2.Frame) bool {
		if _, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("GOAWAY: %v", f)
		}
		d, ok := f.(*http2.DataFrame)
		return ok && d.StreamID == 3
	})
	if d := f.(*http2.DataFrame); string(d.Data()) != "other ok" || !d.StreamEnded() {
		t.Fatalf("stream 3: %q end=%v", d.Data(), d.StreamEnded())
	}
}

// TestUnreadBodyCredited: a handler that answers without reading its body does not stall the
// connection: the body bytes it left are credited back to the connection window.
func TestUnreadBodyCredited(t *testing.T) {
	cfg := &Config{StreamWindow: 64 << 10, ConnWindow: 64 << 10}
	ts := startServer(t, cfg, HandlerFunc(func(s *Stream) {
		if s.Request().URL.Path == "/ignore" {
			time.Sleep(50 * time.Millisecond) // the body arrives meanwhile
			io.WriteString(s, "ignored")
			return
		}
		n, _ := io.Copy(io.Discard, s.Request().Body)
		fmt.Fprintf(s, "%d", n)
	}), false)
	c := h2cClient()
	for i := range 8 {
		path := "/ignore"
		if i%2 == 1 {
			path = "/read"
		}
		resp, err := c.Post("http://"+ts.addr+path, "application/octet-stream", bytes.NewReader(make([]byte, 60<<10)))
		if err != nil {
			t.Fatalf("%d %s: %v", i, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if path == "/read" && string(b) != strconv.Itoa(60<<10) {
			t.Fatalf("%d: read %q", i, b)
		}
	}
}

// TestGracefulShutdown: Shutdown sends GOAWAY with the last stream; the stream in flight
// completes, a newer one is refused, and the connection closes after the last stream.
func TestGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		started <- struct{}{}
		<-release
		io.WriteString(s, "done")
	}), false)
	rc := dialRaw(t, ts.addr)
	rc.get(1, true)
	<-started
	ts.mu.Lock()
	sc := ts.conns[0]
	ts.mu.Unlock()
	sc.Shutdown()
	ga := rc.expect("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if ga.LastStreamID != 1 || ga.ErrCode != http2.ErrCodeNo {
		t.Fatalf("GOAWAY last %d code %v", ga.LastStreamID, ga.ErrCode)
	}
	rc.get(3, true)
	rc.expect("REFUSED_STREAM for stream 3", isRST(3, http2.ErrCodeRefusedStream))
	close(release)
	f := rc.expect("DATA on stream 1", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok })
	if d := f.(*http2.DataFrame); string(d.Data()) != "done" || !d.StreamEnded() {
		t.Fatalf("stream 1: %q", d.Data())
	}
	for {
		if _, err := rc.readErr(); err != nil {
			if isTimeout(err) {
				t.Fatal("connection open 5s after its last stream")
			}
			break
		}
	}
}

// TestRapidReset: a client that opens and resets streams at once gets GOAWAY
// ENHANCE_YOUR_CALM once over its reset budget, whether its handlers end with the reset or keep
// running a while (a server's answer awaited), so that later streams are refused, and the abuse
// is reported.
func TestRapidReset(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    HandlerFunc
	}{
		{"handlers end on reset", func(s *Stream) { <-s.Request().Context().Done() }},
		{"handlers outlive reset", func(s *Stream) { time.Sleep(10 * time.Millisecond) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var abuse atomic.Value
			cfg := &Config{MaxClientResets: 500, OnAbuse: func(what string) { abuse.Store(what) }}
			ts := startServer(t, cfg, tc.h, false)
			rc := dialRaw(t, ts.addr)
			go func() {
				for id := uint32(1); id < 20000; id += 2 {
					if rc.getErr(id, true) != nil || rc.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
						return
					}
				}
			}()
			if code := rc.expectGoAway(); code != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
			}
			if ts.stats.ResetFloods.Load() != 1 {
				t.Fatalf("ResetFloods = %d", ts.stats.ResetFloods.Load())
			}
			if abuse.Load() != "stream resets" {
				t.Fatalf("OnAbuse got %v", abuse.Load())
			}
		})
	}
}

// TestResetHandlerBacklog: handlers that keep running after their stream was reset are
// bounded: beyond MaxResetHandlers, new streams are refused.
func TestResetHandlerBacklog(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	var started atomic.Int32
	ts := startServer(t, &Config{MaxResetHandlers: 2}, HandlerFunc(func(s *Stream) {
		started.Add(1)
		<-block // ignores its context
	}), false)
	rc := dialRaw(t, ts.addr)
	for id := uint32(1); id <= 3; id += 2 {
		rc.get(id, true)
		waitFor(t, "handler start", func() bool { return started.Load() == int32(id/2+1) })
		rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	time.Sleep(50 * time.Millisecond)
	rc.get(5, true)
	rc.expect("REFUSED_STREAM", isRST(5, http2.ErrCodeRefusedStream))
	if n := started.Load(); n != 2 {
		t.Fatalf("%d handlers started", n)
	}
}

// TestConcurrencyCap: streams beyond MaxConcurrentStreams are refused.
func TestConcurrencyCap(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	ts := startServer(t, &Config{MaxConcurrentStreams: 2}, HandlerFunc(func(s *Stream) { <-block }), false)
	rc := dialRaw(t, ts.addr)
	if v := rc.settings[http2.SettingMaxConcurrentStreams]; v != 2 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d", v)
	}
	rc.get(1, true)
	rc.get(3, true)
	rc.get(5, true)
	rc.expect("REFUSED_STREAM", isRST(5, http2.ErrCodeRefusedStream))
	if ts.stats.RefusedStreams.Load() != 1 {
		t.Fatalf("RefusedStreams = %d", ts.stats.RefusedStreams.Load())
	}
}

// TestContinuationFlood: a header block that never ends is cut at the raw bound with GOAWAY.
func TestContinuationFlood(t *testing.T) {
	ts := startServer(t, &Config{MaxHeaderListSize: 8 << 10}, HandlerFunc(specHandler), false)
	rc := dialRaw(t, ts.addr)
	first := rc.block(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/")
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first})
	go func() {
		frag := rc.block("x-pad", strings.Repeat("a", 1000))
		for range 10000 {
			if rc.fr.WriteContinuation(1, false, frag) != nil {
				return
			}
		}
	}()
	if code := rc.expectGoAway(); code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v", code)
	}
	if ts.stats.HeaderFloods.Load() != 1 {
		t.Fatalf("HeaderFloods = %d", ts.stats.HeaderFloods.Load())
	}
}

// TestHeaderListTooLarge: a request whose decoded header list exceeds MaxHeaderListSize is
// answered 431 and the connection goes on.
func TestHeaderListTooLarge(t *testing.T) {
	ts := startServer(t, &Config{MaxHeaderListSize: 4 << 10}, HandlerFunc(specHandler), false)
	rc := dialRaw(t, ts.addr)
	if v := rc.settings[http2.SettingMaxHeaderListSize]; v != 4<<10 {
		t.Fatalf("SETTINGS_MAX_HEADER_LIST_SIZE = %d", v)
	}
	rc.get(1, true, "x-big", strings.Repeat("b", 5000))
	f := rc.expect("HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if f.PseudoValue("status") != "431" || !f.StreamEnded() {
		t.Fatalf("status %q", f.PseudoValue("status"))
	}
	rc.get(3, true)
	f = rc.expect("HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if f.StreamID != 3 || f.PseudoValue("status") != "200" {
		t.Fatalf("next stream: %v", f)
	}
	if ts.stats.HeadersTooBig.Load() != 1 {
		t.Fatalf("HeadersTooBig = %d", ts.stats.HeadersTooBig.Load())
	}
}

// TestPingFloodBounded: a client that sends PINGs and never reads the acks is disconnected
// once MaxQueuedControl acks pile up behind a blocked write.
func TestPingFloodBounded(t *testing.T) {
	ts := startServer(t, &Config{MaxQueuedControl: 100, WriteTimeout: time.Minute}, HandlerFunc(specHandler), false)
	rc := dialRaw(t, ts.addr)
	var data [8]byte
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		rc.c.SetWriteDeadline(time.Now().Add(time.Second))
		if err := rc.fr.WritePing(false, data); err != nil {
			break
		}
	}
	waitFor(t, "ControlFloods", func() bool { return ts.stats.ControlFloods.Load() == 1 })
}

// TestEmptyFrameFlood: empty DATA frames beyond the budget end the connection.
func TestEmptyFrameFlood(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	ts := startServer(t, &Config{MaxEmptyFrames: 50}, HandlerFunc(func(s *Stream) { <-block }), false)
	rc := dialRaw(t, ts.addr)
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: rc.block(
		":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/")})
	go func() {
		for range 100 {
			if rc.fr.WriteData(1, false, nil) != nil {
				return
			}
		}
	}()
	if code := rc.expectGoAway(); code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v", code)
	}
	if ts.stats.EmptyFloods.Load() != 1 {
		t.Fatalf("EmptyFloods = %d", ts.stats.EmptyFloods.Load())
	}
}

// TestIdleTimeout: a connection without streams is closed with GOAWAY NO_ERROR.
func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, &Config{IdleTimeout: 200 * time.Millisecond}, HandlerFunc(specHandler), false)
	rc := dialRaw(t, ts.addr)
	rc.get(1, true)
	start := time.Now()
	if code := rc.expectGoAway(); code != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v", code)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("closed after %v", d)
	}
	if ts.stats.IdleCloses.Load() != 1 {
		t.Fatalf("IdleCloses = %d", ts.stats.IdleCloses.Load())
	}
}

// TestPing: a silent connection gets a PING; one that answers stays open (a long-idle stream is
// not cut), one that does not is closed.
func TestPing(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	cfg := &Config{PingAfter: 100 * time.Millisecond, PingTimeout: 200 * time.Millisecond}
	ts := startServer(t, cfg, HandlerFunc(func(s *Stream) { <-block }), false)

	rc := dialRaw(t, ts.addr)
	rc.get(1, true) // an open stream that stays silent
	for range 3 {
		f := rc.expect("PING", func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() })
		rc.fr.WritePing(true, f.(*http2.PingFrame).Data)
	}
	if n := ts.stats.PingTimeouts.Load(); n != 0 {
		t.Fatalf("PingTimeouts = %d for a client that answers", n)
	}

	silent := dialRaw(t, ts.addr)
	silent.get(1, true)
	for {
		if _, err := silent.readErr(); err != nil {
			if isTimeout(err) {
				t.Fatal("unanswered PING did not close the connection")
			}
			break
		}
	}
	waitFor(t, "PingTimeouts", func() bool { return ts.stats.PingTimeouts.Load() == 1 })
}

// TestHandlerReturnsWithoutWriting: 500 with an empty body, and a panic resets the stream.
func TestHandlerReturnsWithoutWriting(t *testing.T) {
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		if s.Request().URL.Path == "/panic" {
			panic(http.ErrAbortHandler)
		}
	}), false)
	c := h2cClient()
	resp, err := c.Get("http://" + ts.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || len(b) != 0 {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	_, err = c.Get("http://" + ts.addr + "/panic")
	if err == nil || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
		t.Fatalf("panic: %v", err)
	}
}

// TestShortResponseReset: a response shorter than its Content-Length is reset, not ended.
func TestShortResponseReset(t *testing.T) {
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		s.Header().Set("Content-Length", "10")
		s.WriteHeader(200, false)
		s.Write([]byte("abc"))
	}), false)
	resp, err := h2cClient().Get("http://" + ts.addr + "/")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a cut response read as complete")
	}
}

// TestStreamingFlush: Flush puts the bytes on the socket at once.
func TestStreamingFlush(t *testing.T) {
	next := make(chan struct{})
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		s.WriteHeader(200, false)
		for i := range 3 {
			fmt.Fprintf(s, "part%d", i)
			if err := s.Flush(); err != nil {
				return
			}
			select {
			case <-next:
			case <-s.Request().Context().Done():
				return
			}
		}
	}), false)
	resp, err := h2cClient().Get("http://" + ts.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 16)
	for i := range 3 {
		n, err := resp.Body.Read(buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("part%d", i) {
			t.Fatalf("read %d: %q %v", i, buf[:n], err)
		}
		next <- struct{}{}
	}
}

// TestExpectContinue: a client that waits for 100 Continue gets it when the handler reads.
func TestExpectContinue(t *testing.T) {
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		n, _ := io.Copy(io.Discard, s.Request().Body)
		fmt.Fprintf(s, "%d", n)
	}), false)
	rc := dialRaw(t, ts.addr)
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: rc.block(
		":method", "PUT", ":scheme", "http", ":authority", "x", ":path", "/", "expect", "100-continue")})
	f := rc.expect("HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if f.PseudoValue("status") != "100" {
		t.Fatalf("status %q, want 100", f.PseudoValue("status"))
	}
	rc.fr.WriteData(1, true, []byte("hello"))
	d := rc.expect("DATA", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
	if string(d.Data()) != "5" {
		t.Fatalf("body %q", d.Data())
	}
}

// TestConnCloseCancels: when the connection dies, running handlers see their context end.
func TestConnCloseCancels(t *testing.T) {
	done := make(chan struct{})
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		select {
		case <-s.Request().Context().Done():
			close(done)
		case <-time.After(5 * time.Second):
		}
	}), false)
	rc := dialRaw(t, ts.addr)
	rc.get(1, true)
	time.Sleep(20 * time.Millisecond)
	rc.c.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("context not canceled when the connection closed")
	}
	_ = context.Canceled
}

// TestHeaderTimeout: a connection that sends no preface is closed after HeaderTimeout.
func TestHeaderTimeout(t *testing.T) {
	ts := startServer(t, &Config{HeaderTimeout: 200 * time.Millisecond}, HandlerFunc(specHandler), false)
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PRI * HTTP/2.0\r\n") // half a preface, then silence
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("connection not closed: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("closed after %v", d)
	}
	waitFor(t, "HeaderTimeouts", func() bool { return ts.stats.HeaderTimeouts.Load() == 1 })
}

// TestAddField: fields given as bytes go out lower-cased after Header()'s, repeated ones in
// order, with connection-specific fields, invalid names and invalid values left out; a
// content-length among them is enforced like Header's; a table of many fields spills over the
// stream's own arrays. The same answer twice checks the HPACK table kept the strings intact.
func TestAddField(t *testing.T) {
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		s.Header().Set("X-From-Map", "m")
		s.AddField([]byte("Content-Type"), []byte("text/plain"))
		s.AddField([]byte("SET-COOKIE"), []byte("a=1"))
		s.AddField([]byte("set-cookie"), []byte("b=2"))
		s.AddField([]byte("Connection"), []byte("close"))
		s.AddField([]byte("Transfer-Encoding"), []byte("chunked"))
		s.AddField([]byte("Bad Name"), []byte("x"))
		s.AddField([]byte("X-Bad-Value"), []byte("a\nb"))
		s.AddField([]byte("X-Empty"), nil)
		for i := range 30 {
			s.AddField(fmt.Appendf(nil, "X-Many-%d", i), bytes.Repeat([]byte{'v'}, 40))
		}
		s.AddField([]byte("content-length"), []byte("5"))
		s.WriteHeader(200, false)
		s.Write([]byte("hello"))
	}), false)
	c := h2cClient()
	for range 2 {
		resp, err := c.Get("http://" + ts.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "hello" || resp.ContentLength != 5 {
			t.Fatalf("body %q, length %d, %v", body, resp.ContentLength, err)
		}
		h := resp.Header
		if h.Get("Content-Type") != "text/plain" || h.Get("X-From-Map") != "m" || !reflect.DeepEqual(h["Set-Cookie"], []string{"a=1", "b=2"}) ||
			h.Get("Connection") != "" || h.Get("Transfer-Encoding") != "" || h.Get("X-Bad-Value") != "" || h["X-Empty"] == nil ||
			h.Get("X-Many-29") != strings.Repeat("v", 40) {
			t.Fatalf("header %v", h)
		}
	}
	// A body longer than the content-length given as bytes is cut (the stream is reset).
	ts2 := startServer(t, nil, HandlerFunc(func(s *Stream) {
		s.AddField([]byte("Content-Length"), []byte("2"))
		s.WriteHeader(200, false)
		if _, err := s.Write([]byte("toolong")); err == nil {
			t.Error("a write past the content-length succeeded")
		}
	}), false)
	resp, err := c.Get("http://" + ts2.addr + "/")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a response longer than its content-length arrived whole")
	}
}

// TestRecycle: streams whose handlers call Recycle are reused for later streams, and a reused
// stream carries nothing of its last request: concurrent requests with bodies, fields, trailers
// and client resets each get their own answer.
func TestRecycle(t *testing.T) {
	var mu sync.Mutex
	seen := map[*Stream]int{}
	ts := startServer(t, nil, HandlerFunc(func(s *Stream) {
		mu.Lock()
		seen[s]++
		mu.Unlock()
		r := s.BareRequest()
		body, err := io.ReadAll(r.Body)
		if err != nil {
			s.Recycle()
			return
		}
		if r.URL.Path == "/slow" {
			<-s.Context().Done() // the client resets it
			s.Recycle()
			return
		}
		var x string
		for _, f := range s.Fields() {
			if f.Name == "x-n" {
				x = f.Value
			}
		}
		s.AddField([]byte("X-Echo"), []byte(x))
		tr := r.Trailer.Get("X-T")
		s.WriteHeaderData(200, []byte(r.URL.Path+" "+string(body)+" "+tr))
		s.Recycle()
	}), false)
	c := &http.Client{Timeout: 20 * time.Second, Transport: h2cTransport()}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%10 == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ts.addr+"/slow", nil)
				if resp, err := c.Do(req); err == nil {
					resp.Body.Close()
					errs <- fmt.Errorf("/slow answered %d", resp.StatusCode)
				}
				return
			}
			n := strconv.Itoa(i)
			req, _ := http.NewRequest("POST", "http://"+ts.addr+"/"+n, io.MultiReader(strings.NewReader("body-"), strings.NewReader(n)))
			req.Header.Set("X-N", n)
			req.Trailer = http.Header{"X-T": {"t" + n}}
			resp, err := c.Do(req)
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := "/" + n + " body-" + n + " t" + n; err != nil || string(b) != want || resp.Header.Get("X-Echo") != n {
				errs <- fmt.Errorf("%d: %q (echo %q) %v, want %q", i, b, resp.Header.Get("X-Echo"), err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) >= 400 {
		t.Errorf("400 streams used %d distinct streams: none was reused", len(seen))
	}
	t.Logf("400 streams used %d distinct streams", len(seen))
}
