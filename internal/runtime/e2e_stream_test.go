package runtime

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// These two tests are deliberately not parallel: sequential tests run alone, so the heap samples
// see only this transfer.

const (
	bigSize       = int64(2) << 30 // 2 GiB
	maxHeapGrowth = 64 << 20
	bigDeadline   = 60 * time.Second
)

func TestE2EStreamDownload2GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("2 GiB transfer; skipped with -short")
	}
	bs := startDemo(t, "big")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	rc.c.SetDeadline(time.Now().Add(bigDeadline))

	hw := watchHeap()
	start := time.Now()
	fmt.Fprintf(rc.c, "GET /bytes/%d HTTP/1.1\r\nHost: big.test\r\n\r\n", bigSize)
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		hw.finish()
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
	base, peak := hw.finish()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("after %d bytes: %v", n, err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != bigSize || n != bigSize {
		t.Fatalf("status %d, Content-Length %d, read %d, want %d", resp.StatusCode, resp.ContentLength, n, bigSize)
	}
	t.Logf("2 GiB download in %v (%.0f MiB/s); HeapInuse %d MiB -> peak %d MiB", d, float64(n)/d.Seconds()/(1<<20), base>>20, peak>>20)
	if peak > base+maxHeapGrowth {
		t.Errorf("heap grew by %d MiB during the transfer, want < %d MiB", (peak-base)>>20, maxHeapGrowth>>20)
	}
	// The connection is still usable.
	resp2, body := rc.mustDo(t, get("/healthz", "big.test"))
	if resp2.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("after the transfer: %d %q", resp2.StatusCode, body)
	}
}

// sinkServer counts the bytes of each request body (Content-Length framing) and answers with the
// count.
func sinkServer(t *testing.T) *rawServer {
	return startRawServer(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(bigDeadline))
		br := bufio.NewReaderSize(c, 64<<10)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			buf := make([]byte, 1<<20)
			n, err := io.CopyBuffer(io.Discard, r.Body, buf)
			if err != nil {
				return
			}
			s := strconv.FormatInt(n, 10)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(s), s)
		}
	})
}

func TestE2EStreamUpload2GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("2 GiB transfer; skipped with -short")
	}
	sink := sinkServer(t)
	rt := startWaage(t, simpleConfig("", "", sink.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	rc.c.SetDeadline(time.Now().Add(bigDeadline))

	hw := watchHeap()
	start := time.Now()
	type result struct {
		resp *http.Response
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		done <- result{resp, b, err}
	}()
	fmt.Fprintf(rc.c, "POST /sink HTTP/1.1\r\nHost: big.test\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", bigSize)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	var sent int64
	var werr error
	for sent < bigSize {
		k := int64(len(buf))
		if bigSize-sent < k {
			k = bigSize - sent
		}
		n, err := rc.c.Write(buf[:k])
		sent += int64(n)
		if err != nil {
			werr = err
			break
		}
	}
	res := <-done
	base, peak := hw.finish()
	d := time.Since(start)
	if werr != nil {
		t.Fatalf("upload failed after %d bytes: %v", sent, werr)
	}
	if res.err != nil {
		t.Fatalf("response: %v", res.err)
	}
	if res.resp.StatusCode != 200 || string(res.body) != strconv.FormatInt(bigSize, 10) {
		t.Fatalf("status %d, sink counted %q bytes, want %d", res.resp.StatusCode, res.body, bigSize)
	}
	t.Logf("2 GiB upload in %v (%.0f MiB/s); HeapInuse %d MiB -> peak %d MiB", d, float64(sent)/d.Seconds()/(1<<20), base>>20, peak>>20)
	if peak > base+maxHeapGrowth {
		t.Errorf("heap grew by %d MiB during the transfer, want < %d MiB", (peak-base)>>20, maxHeapGrowth>>20)
	}
}
