package runtime

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestE2EShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")

	// An idle keep-alive connection, to be closed by the shutdown.
	idle := dialRaw(t, addr)
	idle.mustDo(t, get("/", "sd.test"))

	type result struct {
		status int
		path   string
		close  bool
		err    error
	}
	res := make(chan result, 1)
	busy := dialRaw(t, addr)
	go func() {
		resp, body, err := busy.do(get("/slow?ms=500", "sd.test"))
		if err != nil {
			res <- result{err: err}
			return
		}
		res <- result{status: resp.StatusCode, path: demoInfo(body)["path"], close: resp.Close}
	}()
	time.Sleep(150 * time.Millisecond) // the slow request is in flight

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	sdErr := make(chan error, 1)
	go func() { sdErr <- rt.Shutdown(ctx) }()

	// New connections are refused while the in-flight request finishes.
	time.Sleep(50 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("new connection accepted during shutdown")
	}
	// The idle connection is closed without a response.
	if ok, extra := idle.closedWithin(2 * time.Second); !ok || len(extra) > 0 {
		t.Errorf("idle connection during shutdown: closed %v extra %q", ok, extra)
	}

	r := <-res
	if r.err != nil || r.status != 200 || r.path != "/slow?ms=500" {
		t.Fatalf("in-flight request: %+v", r)
	}
	if !r.close {
		t.Errorf("the last response before shutdown should say Connection: close")
	}
	if err := <-sdErr; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if ok, _ := busy.closedWithin(2 * time.Second); !ok {
		t.Errorf("busy connection not closed after its request finished")
	}
	// After Shutdown: refused.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("new connection accepted after shutdown")
	}
}

func TestE2EShutdownDeadline(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	busy := dialRaw(t, addr)
	busy.write(get("/slow?ms=5000", "sd.test"))
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := rt.Shutdown(ctx)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Shutdown with a 300ms deadline took %v", d)
	}
	if err == nil {
		t.Errorf("Shutdown cut a request short but returned nil")
	}
	if ok, _ := busy.closedWithin(2 * time.Second); !ok {
		t.Errorf("connection still open after the shutdown deadline")
	}
	// End the slow request upstream, so the request goroutine waiting on it ends now rather
	// than when the cleanup's Shutdown gives up.
	bs[0].Close()
}
