package runtime

// End-to-end tests of the HTTP/2 abuse limits through a running frontend: a rapid-reset client
// (CVE-2023-44487) and a CONTINUATION flood, each from a client written on x/net/http2's Framer,
// while another client is served.

import (
	"bytes"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/waage/waage/internal/guard"
)

// h2Raw is a raw HTTP/2 client connection (h2c with prior knowledge).
type h2Raw struct {
	c  net.Conn
	fr *http2.Framer
	mu sync.Mutex // writes: the reading goroutine acknowledges SETTINGS beside the writer
}

// write runs one frame write under mu.
func (h *h2Raw) write(f func(fr *http2.Framer) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return f(h.fr)
}

func dialH2Raw(t *testing.T, addr string) *h2Raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return &h2Raw{c: c, fr: fr}
}

// goAway reads frames until a GOAWAY or the connection's end; it returns the GOAWAY's code, or
// false when the connection ended without one.
func (h *h2Raw) goAway(d time.Duration) (http2.ErrCode, bool) {
	h.c.SetReadDeadline(time.Now().Add(d))
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return 0, false
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			return f.ErrCode, true
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.write((*http2.Framer).WriteSettingsAck)
			}
		}
	}
}

// getBlock is the HPACK block of a GET for path.
func getBlock(addr, path string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", addr}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return buf.Bytes()
}

// TestE2EProtectH2RapidReset: a client that opens streams and resets them at once, as fast as it
// can, is sent GOAWAY ENHANCE_YOUR_CALM; few of its streams reach a server, the heap stays
// bounded, and another client is served all the while.
func TestE2EProtectH2RapidReset(t *testing.T) {
	var reached atomic.Int64
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		time.Sleep(10 * time.Millisecond)
		w.Write([]byte("ok"))
	})
	rt := startWaageH2(t, oneFrontendConfig("  - name: web\n    listen: [\"127.0.0.1:0\"]\n    h2c: true\n    default_backend: b\n", "", "", be.addr))
	addr := feAddr(t, rt, "web")
	heap := watchHeap()
	loadStart := time.Now()
	stopLoad := backgroundLoad(addr, "p.test", "/", 2000)

	h := dialH2Raw(t, addr)
	block := getBlock(addr, "/")
	done := make(chan struct{})
	var code http2.ErrCode
	var gotGoAway bool
	go func() {
		defer close(done)
		code, gotGoAway = h.goAway(15 * time.Second)
	}()
	sent := 0
	deadline := time.Now().Add(10 * time.Second)
	for id := uint32(1); sent < 200_000 && time.Now().Before(deadline); id += 2 {
		err := h.write(func(fr *http2.Framer) error {
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
				return err
			}
			return fr.WriteRSTStream(id, http2.ErrCodeCancel)
		})
		if err != nil {
			break
		}
		sent++
	}
	<-done
	time.Sleep(time.Until(loadStart.Add(time.Second))) // the other client runs for a second at least
	res := stopLoad()
	base, peak := heap.finish()
	t.Logf("rapid reset: %d streams opened and reset before the connection ended (GOAWAY %v, code %v); %d reached the server; heap %d -> %d KiB; other client: %d ok, %d failed",
		sent, gotGoAway, code, reached.Load()-int64(res.ok), base>>10, peak>>10, res.ok, len(res.errs))
	if !gotGoAway || code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("connection ended with GOAWAY %v code %v, want ENHANCE_YOUR_CALM", gotGoAway, code)
	}
	if sent >= 200_000 {
		t.Errorf("%d streams opened and reset without the connection being ended", sent)
	}
	if len(res.errs) > 0 || res.ok == 0 {
		t.Errorf("the other client: %d ok, errors %v", res.ok, res.errs)
	}
	if peak > base+64<<20 {
		t.Errorf("heap grew from %d to %d KiB", base>>10, peak>>10)
	}
	if n := guardOf(t, rt, "web").Refused[guard.H2Abuse].Load(); n == 0 {
		t.Error("the abuse was not counted as h2_abuse")
	}
	// The HTTP/2 server's own counters (process-wide: other tests may add to them).
	fams := scrape(t, startAdminAPI(t, rt, "", nil))
	if got := metricValue(fams, "waage_http2_events_total", "event", "reset_flood"); got < 1 {
		t.Errorf(`waage_http2_events_total{event="reset_flood"} = %g, want at least 1`, got)
	}
	if got := metricValue(fams, "waage_http2_streams_total"); got < 1 {
		t.Errorf("waage_http2_streams_total = %g: the flood's first streams reached the router", got)
	}
}

// TestE2EProtectH2ContinuationFlood: a HEADERS frame followed by endless CONTINUATION frames is
// cut off with a GOAWAY (or a closed connection) after a bounded number of bytes, and another
// client is served meanwhile.
func TestE2EProtectH2ContinuationFlood(t *testing.T) {
	be := startDemo(t, "app")
	rt := startWaageH2(t, oneFrontendConfig("  - name: web\n    listen: [\"127.0.0.1:0\"]\n    h2c: true\n    default_backend: b\n", "", "", be[0].Addr))
	addr := feAddr(t, rt, "web")
	loadStart := time.Now()
	stopLoad := backgroundLoad(addr, "p.test", "/", 500)
	h := dialH2Raw(t, addr)
	done := make(chan struct{})
	var gotGoAway bool
	var code http2.ErrCode
	go func() {
		defer close(done)
		code, gotGoAway = h.goAway(15 * time.Second)
	}()
	// A literal header field that is never finished decoding: x-pad with 16 KB of value per
	// frame, so the header list grows without bound unless the server stops it.
	var pad bytes.Buffer
	hpack.NewEncoder(&pad).WriteField(hpack.HeaderField{Name: "x-pad", Value: string(bytes.Repeat([]byte("a"), 16000))})
	first := append(getBlock(addr, "/"), pad.Bytes()...)
	sentBytes := 0
	err := h.write(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true, EndHeaders: false})
	})
	for err == nil && sentBytes < 64<<20 {
		err = h.write(func(fr *http2.Framer) error { return fr.WriteContinuation(1, false, pad.Bytes()) })
		sentBytes += pad.Len()
	}
	<-done
	time.Sleep(time.Until(loadStart.Add(time.Second)))
	res := stopLoad()
	t.Logf("CONTINUATION flood: %d KiB sent before the connection ended (GOAWAY %v, code %v, write error %v); other client %d ok, %d failed",
		sentBytes>>10, gotGoAway, code, err, res.ok, len(res.errs))
	// The kernel's socket buffers take a few MiB more after the server stopped reading.
	if err == nil || sentBytes >= 16<<20 {
		t.Errorf("%d KiB of CONTINUATION frames accepted (write error %v)", sentBytes>>10, err)
	}
	if len(res.errs) > 0 || res.ok == 0 {
		t.Errorf("the other client: %d ok, errors %v", res.ok, res.errs)
	}
}
