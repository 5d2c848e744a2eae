package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/waage/waage/internal/demo"
)

// buildWaage compiles the command once per test binary run.
func buildWaage(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "waage")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// servedBy returns the X-Served-By of a GET, retrying while the listener comes up.
func servedBy(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.Header.Get("X-Served-By")
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunReloadAndStop runs the real binary: it serves, reloads on SIGHUP (and refuses a broken
// file while serving on), writes the access log, and exits 0 on SIGTERM after in-flight requests.
func TestRunReloadAndStop(t *testing.T) {
	bin := buildWaage(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bs, err := demo.Start(ctx, []string{"A", "B"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	listen := freeAddr(t)
	accessLog := filepath.Join(dir, "access.log")
	cfgPath := filepath.Join(dir, "waage.yaml")
	write := func(backendAddr string) {
		t.Helper()
		text := fmt.Sprintf(`log: {level: info, access: %q}
frontends:
  - {name: web, listen: [%q], default_backend: b}
backends:
  - {name: b, servers: [{name: s, address: %q}]}
`, accessLog, listen, backendAddr)
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(bs[0].Addr)
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("waage stderr:\n%s", stderr.String())
		}
	}()
	url := "http://" + listen + "/"
	if got := servedBy(t, url); got != "A" {
		t.Fatalf("served by %q, want A", got)
	}

	write(bs[1].Addr)
	cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for servedBy(t, url) != "B" {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not apply the new backend")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := os.WriteFile(cfgPath, []byte("frontends: [{name: web, listen: [\"x\"]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if got := servedBy(t, url); got != "B" {
		t.Fatalf("after a refused reload: served by %q, want B", got)
	}
	if !strings.Contains(stderr.String(), "reload refused") {
		t.Errorf("refused reload not logged:\n%s", stderr.String())
	}

	// SIGTERM while a request is in flight: it completes, then waage exits 0.
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + listen + "/slow?ms=500")
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	time.Sleep(150 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	if code := <-done; code != 200 {
		t.Errorf("request in flight at SIGTERM: status %d", code)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	f, err := os.Open(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
		if !strings.Contains(sc.Text(), `"GET /`) {
			t.Errorf("access log line %q", sc.Text())
		}
	}
	if lines < 3 {
		t.Errorf("access log has %d lines", lines)
	}
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestValidateAdmin: a config with admin.listen is valid, without a warning (the admin API
// serves it).
func TestValidateAdmin(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.yaml")
	os.WriteFile(p, []byte("admin: {listen: \"127.0.0.1:9900\"}\n"), 0o644)
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "-c", p}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if errOut.Len() != 0 {
		t.Errorf("stderr = %q, want nothing", errOut.String())
	}
}

// TestDemoCommand runs `waage demo`: it prints the balancer URL, round-robins over the three demo
// backends, and Ctrl-C (SIGINT) stops everything with exit status 0.
func TestDemoCommand(t *testing.T) {
	bin := buildWaage(t)
	listen := freeAddr(t)
	cmd := exec.Command(bin, "demo", "-listen", listen)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	found := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "http://"+listen+"/") {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("demo did not print its URL")
	}
	go io.Copy(io.Discard, stdout)
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		seen[servedBy(t, "http://"+listen+"/")] = true
	}
	if len(seen) != 3 {
		t.Errorf("three requests reached %v, want demo-1..3", seen)
	}
	cmd.Process.Signal(os.Interrupt)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("demo exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop on SIGINT")
	}
}
