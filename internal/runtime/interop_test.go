package runtime

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Interop tests put waage between peers nobody here wrote: nginx as the server, curl and HAProxy
// as clients. `make test` installs them; peerTool finds them (and skips, saying why, only when
// not root).

// freePort is a loopback address nothing listens on yet, for a peer to listen on.
func freePort(t *testing.T) string { return closedAddr(t) }

// startProcess runs a peer in the foreground of its own process and kills it (by PID) at cleanup.
func startProcess(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not come up", url)
}

// startNginx runs nginx with two servers that close keep-alive connections after 3 requests and
// after 1s idle (so waage's pool meets server-side closes), serve a 64 MiB file, gzip (chunked)
// answers, and discard uploads.
func startNginx(t *testing.T) (dir string, addrs []string) {
	t.Helper()
	nginx := peerTool(t, "nginx", "nginx-light")
	dir = t.TempDir()
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>13)
	}
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("waage interop text line\n", 4000)
	if err := os.WriteFile(filepath.Join(dir, "text.txt"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	addrs = []string{freePort(t), freePort(t)}
	var servers strings.Builder
	for i, a := range addrs {
		fmt.Fprintf(&servers, `
  server {
    listen %s;
    root %s;
    location = /who { return 200 "nginx-%d\n"; }
    location /upload { client_max_body_size 200m; client_body_buffer_size 1m; return 204; }
  }`, a, dir, i+1)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/octet-stream;
  types { text/plain txt; }
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_requests 3;
  keepalive_timeout 1s;
  gzip on;
  gzip_types text/plain;
  gzip_min_length 100;
%[2]s
}
`, dir, servers.String())
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startProcess(t, nginx, "-c", cf, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	for _, a := range addrs {
		waitHTTP(t, "http://"+a+"/who")
	}
	return dir, addrs
}

func TestInteropNginxBackend(t *testing.T) {
	dir, addrs := startNginx(t)
	rt := startWaage(t, simpleConfig("", "", addrs...))
	base := "http://" + feAddr(t, rt, "web")
	client := newHTTPClient(t, true)

	t.Run("server-side keep-alive limits cost no request", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 200; i++ {
			resp, err := client.Get(base + "/who")
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
			}
			seen[strings.TrimSpace(string(body))]++
		}
		if seen["nginx-1"] != 100 || seen["nginx-2"] != 100 {
			t.Errorf("round robin over nginx: %v", seen)
		}
	})

	t.Run("stale pooled connections after nginx's idle timeout", func(t *testing.T) {
		for _, method := range []string{"GET", "POST"} {
			for i := 0; i < 3; i++ {
				time.Sleep(1200 * time.Millisecond) // nginx closed the pooled connections meanwhile
				var body io.Reader
				url := base + "/who"
				if method == "POST" {
					body, url = strings.NewReader("payload"), base+"/upload"
				}
				req, _ := http.NewRequest(method, url, body)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s after idle: %v", method, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					t.Fatalf("%s after idle: status %d", method, resp.StatusCode)
				}
			}
		}
	})

	t.Run("64 MiB static file", func(t *testing.T) {
		want, _ := os.ReadFile(filepath.Join(dir, "big.bin"))
		resp, err := client.Get(base + "/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil || n != int64(len(want)) {
			t.Fatalf("got %d bytes, err %v", n, err)
		}
		if sum := sha256.Sum256(want); !bytes.Equal(h.Sum(nil), sum[:]) {
			t.Fatal("content differs")
		}
	})

	t.Run("gzip answers arrive chunked and intact", func(t *testing.T) {
		rc := dialRaw(t, feAddr(t, rt, "web"))
		resp, body := rc.mustDo(t, get("/text.txt", "interop.test", "Accept-Encoding: gzip"))
		if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("expected a chunked answer from nginx's gzip, got %v", resp.TransferEncoding)
		}
		if resp.Header.Get("Content-Encoding") != "gzip" || len(body) == 0 {
			t.Fatalf("Content-Encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(body))
		}
		// The Go client decodes gzip itself.
		r2, err := client.Get(base + "/text.txt")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r2.Body)
		r2.Body.Close()
		want, _ := os.ReadFile(filepath.Join(dir, "text.txt"))
		if !bytes.Equal(got, want) {
			t.Fatalf("decoded text differs: %d vs %d bytes", len(got), len(want))
		}
	})

	t.Run("100 MB upload nginx discards", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/upload", io.LimitReader(zeros{}, 100<<20))
		req.ContentLength = 100 << 20
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestInteropCurl drives waage with curl: HTTP/1.0, a large upload that curl sends with
// Expect: 100-continue (the server's 100 Continue must reach curl), and a chunked upload (which
// curl also sends with Expect), all echoed back.
func TestInteropCurl(t *testing.T) {
	curl := peerTool(t, "curl", "curl")
	// The server reads the whole body before it answers, so net/http sends 100 Continue first.
	echo := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/echo" {
			io.WriteString(w, "a\n")
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Write(body)
	})
	rt := startWaage(t, simpleConfig("", "", echo.addr))
	base := "http://" + feAddr(t, rt, "web")
	dir := t.TempDir()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 256<<10) // 4 MiB
	in := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(in, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want func(out []byte, trace string) error
	}{
		{"http/1.0", []string{"-0", "-sS", base + "/"}, func(out []byte, trace string) error {
			if !strings.HasPrefix(string(out), "a\n") {
				return fmt.Errorf("body %q", out)
			}
			return nil
		}},
		{"expect 100-continue upload", []string{"-sS", "-v", "--data-binary", "@" + in, "-H", "Expect: 100-continue", base + "/echo"}, func(out []byte, trace string) error {
			if !bytes.Equal(out, payload) {
				return fmt.Errorf("echo differs: %d bytes", len(out))
			}
			if !strings.Contains(trace, "HTTP/1.1 100 Continue") {
				return fmt.Errorf("no 100 Continue seen by curl:\n%s", trace)
			}
			return nil
		}},
		{"chunked upload", []string{"-sS", "--data-binary", "@" + in, "-H", "Transfer-Encoding: chunked", base + "/echo"}, func(out []byte, trace string) error {
			if !bytes.Equal(out, payload) {
				return fmt.Errorf("echo differs: %d bytes", len(out))
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(curl, append([]string{"--max-time", "20"}, tt.args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, stderr.String())
			}
			if err := tt.want(out, stderr.String()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestInteropHAProxyInFront puts HAProxy (option forwardfor) in front of waage: waage must append
// to the X-Forwarded-For that HAProxy set, and keep-alive must work across the chain.
func TestInteropHAProxyInFront(t *testing.T) {
	haproxy := peerTool(t, "haproxy", "haproxy")
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	front := freePort(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global
  maxconn 100
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option forwardfor
frontend f
  bind %s
  default_backend b
backend b
  server w %s
`, front, feAddr(t, rt, "web"))
	cf := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startProcess(t, haproxy, "-f", cf, "-db")
	waitHTTP(t, "http://"+front+"/healthz")
	client := newHTTPClient(t, true)
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("GET", "http://"+front+"/", nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		info := demoInfo(body)
		if got := info["x-forwarded-for"]; got != "198.51.100.7, 127.0.0.1, 127.0.0.1" {
			t.Fatalf("X-Forwarded-For at the server = %q", got)
		}
	}
}

// TestInteropCurlFullDuplex sends chunked uploads to a server
// that streams its answer while it still reads: both directions run at once through waage.
func TestInteropCurlFullDuplex(t *testing.T) {
	curl := peerTool(t, "curl", "curl")
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	in := filepath.Join(t.TempDir(), "in.bin")
	payload := bytes.Repeat([]byte("full duplex "), 400000)
	if err := os.WriteFile(in, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		// The first run keeps curl's Expect: 100-continue, which this server never answers, so
		// curl waits a second before it sends: longer than waage's idle-wait deadline.
		expect := "Expect:"
		if i == 0 {
			expect = "X-Expect-Kept: 1"
		}
		cmd := exec.Command(curl, "--max-time", "20", "-sS", "--data-binary", "@"+in, "-H", "Transfer-Encoding: chunked", "-H", expect, "http://"+feAddr(t, rt, "web")+"/echo")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, payload) {
			t.Fatalf("run %d: %v, %d of %d bytes\n%s", i, err, len(out), len(payload), stderr.String())
		}
	}
}
