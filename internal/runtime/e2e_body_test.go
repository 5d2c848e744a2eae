package runtime

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestE2EContentLengthBodies(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	base := "http://" + feAddr(t, rt, "web")
	client := newHTTPClient(t, true)
	for _, size := range []int{0, 1, 4095, 4096, 70_000, 1 << 20, 5<<20 + 3} {
		t.Run(fmt.Sprintf("upload %d", size), func(t *testing.T) {
			data := make([]byte, size)
			rand.Read(data)
			resp, err := client.Post(base+"/echo", "application/x-test", bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || !bytes.Equal(got, data) {
				t.Fatalf("status %d, echoed %d bytes of %d (equal %v)", resp.StatusCode, len(got), size, bytes.Equal(got, data))
			}
			if resp.ContentLength != int64(size) {
				t.Errorf("Content-Length %d, want %d", resp.ContentLength, size)
			}
		})
		t.Run(fmt.Sprintf("download %d", size), func(t *testing.T) {
			resp, err := client.Get(fmt.Sprintf("%s/bytes/%d", base, size))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || len(got) != size || resp.ContentLength != int64(size) {
				t.Fatalf("status %d, %d bytes, Content-Length %d, want %d", resp.StatusCode, len(got), resp.ContentLength, size)
			}
			const line = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
			for i := 0; i < len(got); i += 4093 {
				// The demo's pattern repeats every 32760 bytes (520 lines of 63).
				if want := line[(i%32760)%63]; got[i] != want {
					t.Fatalf("byte %d = %q, want %q", i, got[i], want)
				}
			}
		})
	}
}

// chunkedSink is a backend that reads a request body and describes what it got: framing,
// body, trailers.
func chunkedSink(t *testing.T) *httpBackend {
	return startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "te=%s\ncl=%d\nbody=%s\ntrailer=%s\n",
			strings.Join(r.TransferEncoding, ","), r.ContentLength, body, r.Trailer.Get("X-Trail"))
	})
}

func TestE2EChunkedUpload(t *testing.T) {
	t.Parallel()
	b := chunkedSink(t)
	rt := startWaage(t, simpleConfig("", "", b.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	req := "POST /up HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trail\r\n\r\n" +
		"5\r\nhello\r\n" +
		"1;ext=1\r\n \r\n" +
		"A\r\n0123456789\r\n" +
		"0\r\nX-Trail: tail-value\r\n\r\n"
	resp, body := rc.mustDo(t, req)
	want := "te=chunked\ncl=-1\nbody=hello 0123456789\ntrailer=tail-value\n"
	if resp.StatusCode != 200 || string(body) != want {
		t.Errorf("status %d, server saw:\n%s\nwant:\n%s", resp.StatusCode, body, want)
	}
	// The connection stays usable after a chunked request.
	resp, body = rc.mustDo(t, request("POST", "/up", "up.test", "plain"))
	if want := "te=\ncl=5\nbody=plain\ntrailer=\n"; string(body) != want {
		t.Errorf("second request: status %d, server saw %q, want %q", resp.StatusCode, body, want)
	}
	// A big chunked body streamed in pieces.
	var sb strings.Builder
	sb.WriteString("POST /up HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\n\r\n")
	var plain strings.Builder
	for i := 0; i < 200; i++ {
		piece := strings.Repeat(string(rune('a'+i%26)), 1000+i)
		fmt.Fprintf(&sb, "%x\r\n%s\r\n", len(piece), piece)
		plain.WriteString(piece)
	}
	sb.WriteString("0\r\n\r\n")
	resp, body = rc.mustDo(t, sb.String())
	if want := "te=chunked\ncl=-1\nbody=" + plain.String() + "\ntrailer=\n"; resp.StatusCode != 200 || string(body) != want {
		t.Errorf("big chunked upload: status %d, %d bytes back, want %d", resp.StatusCode, len(body), len(want))
	}
}

// chunkedResponder answers every request with a chunked body and a trailer.
func chunkedResponder(t *testing.T) *rawServer {
	return rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n")
		time.Sleep(5 * time.Millisecond) // arrive in pieces
		io.WriteString(c, "5\r\nhello\r\n6;name=val\r\n world\r\n")
		time.Sleep(5 * time.Millisecond)
		io.WriteString(c, "0\r\nX-Checksum: abc123\r\n\r\n")
		return true
	})
}

func TestE2EChunkedDownloadTrailers(t *testing.T) {
	t.Parallel()
	srv := chunkedResponder(t)
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	for i := 0; i < 3; i++ {
		if err := rc.write(get("/chunked", "ch.test", "TE: trailers")); err != nil {
			t.Fatal(err)
		}
		rc.c.SetDeadline(time.Now().Add(ioTimeout))
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if string(body) != "hello world" {
			t.Errorf("body %q", body)
		}
		if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
			t.Errorf("trailer X-Checksum = %q, want abc123 (trailers %v)", got, resp.Trailer)
		}
	}
}

func TestE2EChunkedToHTTP10(t *testing.T) {
	t.Parallel()
	srv := chunkedResponder(t)
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	if err := rc.write("GET /chunked HTTP/1.0\r\nHost: ch.test\r\nConnection: keep-alive\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	raw, err := rc.readAllRaw()
	if err != nil {
		t.Fatalf("connection not closed after a de-chunked response: %v; got %q", err, raw)
	}
	head, body := splitHead(raw)
	if strings.Contains(strings.ToLower(head), "transfer-encoding") {
		t.Errorf("HTTP/1.0 client got Transfer-Encoding:\n%s", head)
	}
	if !strings.Contains(strings.ToLower(head), "connection: close") {
		t.Errorf("response to HTTP/1.0 delimited by close should say Connection: close:\n%s", head)
	}
	if string(body) != "hello world" {
		t.Errorf("body %q, want de-chunked %q", body, "hello world")
	}
}

// expectBackend answers Expect: 100-continue requests: /accept reads the body (net/http sends
// 100 Continue then) and echoes it; /reject417 and /reject401 answer without reading it.
func expectBackend(t *testing.T) *httpBackend {
	return startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reject417":
			http.Error(w, "no expectations here", http.StatusExpectationFailed)
		case "/reject401":
			w.Header().Set("WWW-Authenticate", "Basic")
			http.Error(w, "who are you", http.StatusUnauthorized)
		default:
			body, _ := io.ReadAll(r.Body)
			w.Write(append([]byte("got:"), body...))
		}
	})
}

func TestE2EExpectContinue(t *testing.T) {
	t.Parallel()
	b := expectBackend(t)
	rt := startWaage(t, simpleConfig("", "", b.addr))
	addr := feAddr(t, rt, "web")

	t.Run("accepted", func(t *testing.T) {
		rc := dialRaw(t, addr)
		for i := 0; i < 2; i++ {
			rc.write("POST /accept HTTP/1.1\r\nHost: e.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
			rc.c.SetDeadline(time.Now().Add(ioTimeout))
			line, err := rc.br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(line, "HTTP/1.1 100 ") {
				t.Fatalf("first response line %q, want 100 Continue before the body", line)
			}
			for {
				l, err := rc.br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if l == "\r\n" {
					break
				}
			}
			rc.write("hello")
			resp, body, err := rc.readResp("POST")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || string(body) != "got:hello" {
				t.Fatalf("final response %d %q", resp.StatusCode, body)
			}
		}
	})
	for _, status := range []int{417, 401} {
		t.Run(fmt.Sprintf("rejected %d", status), func(t *testing.T) {
			rc := dialRaw(t, addr)
			rc.write(fmt.Sprintf("POST /reject%d HTTP/1.1\r\nHost: e.test\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n", status))
			// The body is never sent: the final status must come anyway.
			resp, body, err := rc.readResp("POST")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != status {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, body, status)
			}
			if status == 401 && resp.Header.Get("WWW-Authenticate") != "Basic" {
				t.Errorf("WWW-Authenticate lost: %v", resp.Header)
			}
			// The unsent body makes the connection unusable; it must be closed (not hang).
			if ok, extra := rc.closedWithin(3 * time.Second); !ok {
				t.Errorf("connection neither closed nor usable after a rejected expectation (extra %q)", extra)
			}
		})
	}
	t.Run("ignored by HTTP/1.0-style client that sends the body at once", func(t *testing.T) {
		rc := dialRaw(t, addr)
		resp, body := rc.mustDo(t, "POST /accept HTTP/1.1\r\nHost: e.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
		// A client may send the body without waiting; it then sees 100 (skipped by ReadResponse?) or
		// the final response directly.
		if resp.StatusCode == 100 {
			resp, body, _ = rc.readResp("POST")
		}
		if resp == nil || resp.StatusCode != 200 || string(body) != "got:hello" {
			t.Fatalf("final response %v %q", resp, body)
		}
	})
}

func TestE2EResponseUntilClose(t *testing.T) {
	t.Parallel()
	payload := strings.Repeat("until-close-", 20000) // 240 KB, above the splice threshold
	srv := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
		io.WriteString(c, payload[:1000])
		time.Sleep(10 * time.Millisecond)
		io.WriteString(c, payload[1000:])
		return false
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	if err := rc.write(get("/", "uc.test")); err != nil {
		t.Fatal(err)
	}
	raw, err := rc.readAllRaw()
	if err != nil {
		t.Fatalf("client connection not closed after a read-to-close response: %v", err)
	}
	head, body := splitHead(raw)
	if !strings.HasPrefix(head, "HTTP/1.1 200 ") {
		t.Fatalf("head %q", head)
	}
	if !strings.Contains(strings.ToLower(head), "connection: close") {
		t.Errorf("read-to-close response should carry Connection: close:\n%s", head)
	}
	if string(body) != payload {
		t.Errorf("body %d bytes, want %d", len(body), len(payload))
	}
}

func TestE2EBodylessResponses(t *testing.T) {
	t.Parallel()
	b := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "1000")
			w.Write(bytes.Repeat([]byte("x"), 1000)) // net/http drops it for HEAD
		}
	})
	rt := startWaage(t, simpleConfig("", "", b.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	for i := 0; i < 3; i++ {
		for _, tc := range []struct {
			name, method, path string
			status             int
			cl                 int64
		}{
			{"HEAD", "HEAD", "/bytes", 200, 1000},
			{"204", "GET", "/204", 204, -1},
			{"304", "GET", "/304", 304, -1},
			{"GET after", "GET", "/bytes", 200, 1000},
		} {
			resp, body := rc.mustDo(t, request(tc.method, tc.path, "nb.test", ""))
			if resp.StatusCode != tc.status {
				t.Fatalf("%s: status %d", tc.name, resp.StatusCode)
			}
			if tc.method == "HEAD" && resp.ContentLength != tc.cl {
				t.Errorf("%s: Content-Length %d, want %d", tc.name, resp.ContentLength, tc.cl)
			}
			if tc.method == "GET" && tc.status == 200 && len(body) != 1000 {
				t.Errorf("%s: body %d bytes", tc.name, len(body))
			}
		}
	}
	// The raw reader would fail on stray body bytes; check nothing is left either.
	rc.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _ := rc.br.Peek(1); len(n) > 0 {
		t.Errorf("stray bytes after bodyless responses: %q", n)
	}
	if n := b.conns.Load(); n != 1 {
		t.Errorf("HEAD/204/304 exchanges used %d upstream connections, want 1", n)
	}
}

// TestE2EHEADWithChunkedHeader: a HEAD answer that announces chunked framing must not make waage
// wait for a body.
func TestE2EHEADChunkedAnnounced(t *testing.T) {
	t.Parallel()
	srv := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		if r.Method == "HEAD" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			return true
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	resp, _ := rc.mustDo(t, request("HEAD", "/", "h.test", ""))
	if resp.StatusCode != 200 {
		t.Fatalf("HEAD status %d", resp.StatusCode)
	}
	resp, body := rc.mustDo(t, get("/", "h.test"))
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("GET after HEAD: %d %q", resp.StatusCode, body)
	}
}

// TestE2EEarlyResponseDuringUpload: a server that answers (413) before reading a large request
// body, and closes; the client, still uploading, must get that answer.
func TestE2EEarlyResponseDuringUpload(t *testing.T) {
	t.Parallel()
	srv := startRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n")
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	const size = 4 << 20
	go func() {
		rc.c.Write([]byte(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: u.test\r\nContent-Length: %d\r\n\r\n", size)))
		buf := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(buf) {
			if _, err := rc.c.Write(buf); err != nil {
				return
			}
		}
	}()
	resp, body, err := rc.readResp("POST")
	if err != nil {
		t.Fatalf("the client never got the server's early answer: %v", err)
	}
	if resp.StatusCode != 413 || string(body) != "too big\n" {
		t.Errorf("status %d body %q, want 413", resp.StatusCode, body)
	}
}
