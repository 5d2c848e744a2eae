package runtime

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestE2ERetryConnectFailure(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "c")
	rt := startWaage(t, simpleConfig("", "", bs[0].Addr, closedAddr(t), bs[1].Addr))
	addr := feAddr(t, rt, "web")
	rc := dialRaw(t, addr)
	var fails []string
	for i := 0; i < 300; i++ {
		method, body := "GET", ""
		if i%10 == 9 {
			method, body = "POST", "not idempotent, but a failed connect sent nothing"
		}
		resp, rb, err := rc.do(request(method, "/echo", "r.test", body))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if resp.StatusCode != 200 || string(rb) != body {
			fails = append(fails, fmt.Sprintf("%d %s: %d %q", i, method, resp.StatusCode, rb))
		}
	}
	if len(fails) > 0 {
		t.Errorf("%d of 300 requests failed, e.g. %q", len(fails), fails[:min(5, len(fails))])
	}
	if n := bs[0].Requests() + bs[1].Requests(); n != 300 {
		t.Errorf("servers saw %d requests, want 300", n)
	}
}

// loadClient is one load goroutine's keep-alive connection that never retries: any failure
// counts.
func runLoad(addr string, workers, perWorker int, path string, onReq func(i int)) (ok int64, errs []string) {
	var okN atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var seq atomic.Int64
	deadline := time.Now().Add(30 * time.Second)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rc *rawConn
			defer func() {
				if rc != nil {
					rc.c.Close()
				}
			}()
			for i := 0; i < perWorker && time.Now().Before(deadline); i++ {
				if onReq != nil {
					onReq(int(seq.Add(1)))
				}
				if rc == nil {
					var err error
					if rc, err = dialRawE(addr); err != nil {
						mu.Lock()
						errs = append(errs, "dial: "+err.Error())
						mu.Unlock()
						continue
					}
				}
				resp, body, err := rc.do(get(path, "load.test"))
				var e string
				switch {
				case err != nil:
					e = err.Error()
				case resp.StatusCode != 200:
					e = fmt.Sprintf("status %d: %q", resp.StatusCode, body)
				}
				if e != "" {
					mu.Lock()
					errs = append(errs, e)
					mu.Unlock()
				} else {
					okN.Add(1)
				}
				if err != nil || resp.Close {
					rc.c.Close()
					rc = nil
				}
			}
		}()
	}
	wg.Wait()
	return okN.Load(), errs
}

func TestE2EKillServerUnderLoad(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b", "c")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	const workers, per = 8, 200
	var once sync.Once
	ok, errs := runLoad(addr, workers, per, "/", func(i int) {
		if i == workers*per/3 {
			once.Do(func() { go bs[1].Close() })
		}
	})
	if len(errs) > 0 {
		t.Errorf("%d client errors after killing one of three servers (%d ok), e.g. %q", len(errs), ok, errs[:min(5, len(errs))])
	}
	if ok != workers*per {
		t.Errorf("%d requests ok, want %d", ok, workers*per)
	}
	t.Logf("served: a=%d b=%d c=%d", bs[0].Requests(), bs[1].Requests(), bs[2].Requests())
}

// TestE2EKillServerMidRequests kills a server while it holds requests in flight (slow ones):
// those requests were sent and got no response byte, and as GETs they must be retried.
func TestE2EKillServerMidRequests(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b", "c")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	go func() {
		time.Sleep(300 * time.Millisecond)
		bs[1].Close()
	}()
	ok, errs := runLoad(addr, 8, 20, "/slow?ms=40", nil)
	if len(errs) > 0 {
		t.Errorf("%d client errors (%d ok), e.g. %q", len(errs), ok, errs[:min(5, len(errs))])
	}
}

// idleCloser is an HTTP/1.1 server that keeps connections alive but closes each one 50ms after
// its response, as a server with a short keep-alive timeout does.
func idleCloser(t *testing.T) *rawServer {
	return rawHTTPServer(t, func(c net.Conn, r *http.Request, body []byte) bool {
		out := fmt.Sprintf("%s %d", r.Method, len(body))
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(out), out)
		time.AfterFunc(50*time.Millisecond, func() { c.Close() })
		return true
	})
}

func TestE2EPooledConnClosedWhileIdle(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"GET", "POST", "PUT", "DELETE"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			srv := idleCloser(t)
			rt := startWaage(t, simpleConfig("", "", srv.addr))
			rc := dialRaw(t, feAddr(t, rt, "web"))
			for i := 0; i < 8; i++ {
				if i > 0 {
					time.Sleep(90 * time.Millisecond) // the server has closed the pooled connection
				}
				body := ""
				if method == "POST" || method == "PUT" {
					body = strings.Repeat("x", 10+i)
				}
				resp, rb, err := rc.do(request(method, "/", "idle.test", body))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if want := fmt.Sprintf("%s %d", method, len(body)); resp.StatusCode != 200 || string(rb) != want {
					t.Fatalf("request %d: status %d %q, want 200 %q", i, resp.StatusCode, rb, want)
				}
			}
		})
	}
}

// TestE2ENoRetryAfterResponseBytes: a GET whose server dies mid-body is not retried (the client
// already has part of the response) and the client connection is closed, not reused.
func TestE2ENoRetryAfterResponseBytes(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		hits.Add(1)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
		return false
	})
	bs := startDemo(t, "good")
	rt := startWaage(t, simpleConfig("", "", srv.addr, bs[0].Addr))
	var sawPartial bool
	for i := 0; i < 2; i++ {
		c := dialRaw(t, feAddr(t, rt, "web"))
		resp, body, err := c.do(get("/", "x.test"))
		if resp != nil && resp.StatusCode == 200 && resp.Header.Get("X-Served-By") == "" {
			sawPartial = true
			if err == nil {
				t.Errorf("truncated body delivered as complete: %q", body)
			}
		}
	}
	if !sawPartial {
		t.Errorf("round robin never reached the truncating server")
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("truncating server hit %d times, want 1 (no retry after response bytes)", n)
	}
}

// TestE2ERetryIdempotentOnClose: a server that closes the connection without answering makes
// idempotent requests retry on another server; a POST is not retried (it may have had effects).
func TestE2ERetryIdempotentOnClose(t *testing.T) {
	t.Parallel()
	var closerHits atomic.Int64
	closer := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		closerHits.Add(1)
		return false // close without a response
	})
	bs := startDemo(t, "good")
	rt := startWaage(t, simpleConfig("", "", closer.addr, bs[0].Addr))
	addr := feAddr(t, rt, "web")
	for _, method := range []string{"GET", "HEAD", "OPTIONS", "DELETE", "PUT"} {
		for i := 0; i < 6; i++ {
			rc := dialRaw(t, addr)
			resp, _ := rc.mustDo(t, request(method, "/", "r.test", ""))
			if resp.StatusCode != 200 {
				t.Errorf("%s %d: status %d, want 200 after a retry", method, i, resp.StatusCode)
			}
		}
	}
	before, goodBefore := closerHits.Load(), bs[0].Requests()
	var failed int64
	for i := 0; i < 6; i++ {
		rc := dialRaw(t, addr)
		resp, body := rc.mustDo(t, request("POST", "/", "r.test", "effects"))
		switch resp.StatusCode {
		case 200:
		case 502:
			failed++
			checkErrorBody(t, resp, body, 502)
		default:
			t.Errorf("POST: status %d", resp.StatusCode)
		}
	}
	closerPosts := closerHits.Load() - before
	goodPosts := int64(bs[0].Requests() - goodBefore)
	if closerPosts+goodPosts != 6 || failed != closerPosts {
		t.Errorf("6 POSTs: closer got %d, good server got %d, %d failed: a POST was sent twice", closerPosts, goodPosts, failed)
	}
}
