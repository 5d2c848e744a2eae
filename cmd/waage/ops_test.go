package main

// Tests of reload, binary upgrade, shutdown and the systemd integration, on the real binary: real
// processes, signals and sockets on loopback, a client load running across each step.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/waage/waage/internal/demo"
)

// buildWaageAs compiles the command to path with the given version stamped in.
func buildWaageAs(t *testing.T, path, version string) {
	t.Helper()
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", path, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// proc is a waage process started by a test, logging to a file that the processes replacing it
// in upgrades append to as well.
type proc struct {
	cmd *exec.Cmd
	log string
}

// startWaageProc starts bin with args, stdout and stderr to logPath, and extra environment.
func startWaageProc(t *testing.T, bin, logPath string, env []string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logPath}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("waage log:\n%s", p.text())
		}
	})
	return p
}

func (p *proc) text() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// waitLog waits until the log has at least n lines containing s, and returns those lines.
func (p *proc) waitLog(t *testing.T, s string, n int, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var lines []string
		for _, l := range strings.Split(p.text(), "\n") {
			if strings.Contains(l, s) {
				lines = append(lines, l)
			}
		}
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("log has %d lines with %q after %s, want %d", len(lines), s, within, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// notifySocket is a fake service manager: a unixgram socket collecting sd_notify messages.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func startNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "wn") // short: a unix socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ns := &notifySocket{path: filepath.Join(dir, "notify")}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ns.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ns.mu.Lock()
			ns.msgs = append(ns.msgs, string(buf[:n]))
			ns.mu.Unlock()
		}
	}()
	return ns
}

func (ns *notifySocket) messages() []string {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return append([]string(nil), ns.msgs...)
}

// count returns how many messages contain every one of the given lines.
func (ns *notifySocket) count(lines ...string) int {
	n := 0
	for _, m := range ns.messages() {
		ok := true
		for _, l := range lines {
			if !strings.Contains("\n"+m+"\n", "\n"+l+"\n") {
				ok = false
			}
		}
		if ok {
			n++
		}
	}
	return n
}

// loadStats is what a client load saw.
type loadStats struct {
	ok, failed, refused atomic.Int64
	mu                  sync.Mutex
	errs                []string
}

func (s *loadStats) fail(err error) {
	if errors.Is(err, syscall.ECONNREFUSED) {
		s.refused.Add(1)
	} else {
		s.failed.Add(1)
	}
	s.mu.Lock()
	if len(s.errs) < 10 {
		s.errs = append(s.errs, err.Error())
	}
	s.mu.Unlock()
}

func (s *loadStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%d ok, %d failed, %d refused; first errors: %q", s.ok.Load(), s.failed.Load(), s.refused.Load(), s.errs)
}

// startLoad runs GET requests against the URLs from 6 clients until stop is called (at most 60 s):
// three on keep-alive connections (net/http's client, which retries an idempotent request whose
// reused connection the server closed, as RFC 9112 allows) and three on a new connection for
// every request, so refused connections show.
func startLoad(t *testing.T, urls ...string) (stats *loadStats, stop func()) {
	stats = &loadStats{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		keepAlive := i < 3
		tr := &http.Transport{Proxy: nil, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 4}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.CloseIdleConnections()
			for n := 0; ctx.Err() == nil; n++ {
				req, _ := http.NewRequestWithContext(ctx, "GET", urls[n%len(urls)], nil)
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						stats.fail(err)
					}
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case err != nil && ctx.Err() == nil:
					stats.fail(err)
				case err != nil:
				case resp.StatusCode != 200:
					stats.fail(fmt.Errorf("GET %s: %s", req.URL.Path, resp.Status))
				default:
					stats.ok.Add(1)
				}
				if !keepAlive {
					time.Sleep(2 * time.Millisecond) // bounded: no run on ephemeral ports
				}
			}
		}()
	}
	return stats, func() { cancel(); wg.Wait() }
}

// startTCPEcho is a TCP server that greets with "hello\n" and echoes lines.
func startTCPEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "hello\n")
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					io.WriteString(c, "echo "+line)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// tcpSession is a client connection to a TCP echo through waage.
type tcpSession struct {
	c  net.Conn
	br *bufio.Reader
}

func dialSession(t *testing.T, addr string) *tcpSession {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &tcpSession{c: c, br: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if g, err := s.br.ReadString('\n'); g != "hello\n" {
		t.Fatalf("tcp greeting %q %v", g, err)
	}
	return s
}

// echo sends a line and checks the echo.
func (s *tcpSession) echo(t *testing.T, line string) {
	t.Helper()
	s.c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(s.c, "%s\n", line)
	if got, err := s.br.ReadString('\n'); got != "echo "+line+"\n" {
		t.Fatalf("tcp session: echo of %q: %q, %v", line, got, err)
	}
}

// wsEcho sends a message on a WebSocket to a demo backend and checks the echo.
func wsEcho(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("websocket write %q: %v", msg, err)
	}
	typ, got, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageText || string(got) != msg {
		t.Fatalf("websocket echo of %q: %q %v", msg, got, err)
	}
}

func dialWS(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if _, hello, err := c.Read(ctx); err != nil || !strings.HasPrefix(string(hello), "hello from ") {
		t.Fatalf("websocket greeting %q %v", hello, err)
	}
	return c
}

// get returns the status and X-Served-By of a GET on a new connection.
func getServedBy(t *testing.T, url string) (int, string) {
	t.Helper()
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Served-By")
}

func startDemoBackends(t *testing.T, names ...string) []*demo.Backend {
	t.Helper()
	bs, err := demo.Start(context.Background(), names, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, b := range bs {
			b.Close()
		}
	})
	return bs
}

// TestReloadsUnderLoad: 20 reloads that change routes and weights, alternately by SIGHUP and by
// rewriting the watched file (in place, or a new file renamed over it), under a client load of keep-alive and new connections: no request
// fails and no connection is refused; a WebSocket on the unchanged frontend, a WebSocket on the
// frontend being changed and a TCP session stay open and keep working across all of them; systemd
// hears RELOADING=1 and READY=1 around each; a broken file is refused and the process serves on.
func TestReloadsUnderLoad(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "waage")
	buildWaageAs(t, bin, "reload-test")
	bs := startDemoBackends(t, "A", "B", "C")
	echo := startTCPEcho(t)
	web, wsAddr, tcpAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "waage.yaml")
	routeTo := []string{"a", "b", "c"}
	served := map[string]string{"a": "A", "b": "B", "c": "C"}
	write := func(i int) {
		t.Helper()
		def := "mix"
		if i%4 == 3 {
			def = "b"
		}
		text := fmt.Sprintf(`log: {access: "off"}
frontends:
  - name: web
    listen: [%q]
    routes:
      - {name: r, match: {path_prefix: /r/}, backend: %s}
      - {name: r%d, match: {path_prefix: /x%d/}, backend: c}
    default_backend: %s
  - {name: ws, listen: [%q], default_backend: a}
  - {name: tcp, mode: tcp, listen: [%q], backend: echo}
backends:
  - {name: a, servers: [{name: s, address: %q}]}
  - {name: b, servers: [{name: s, address: %q}]}
  - {name: c, servers: [{name: s, address: %q}]}
  - name: mix
    algorithm: weighted_round_robin
    servers:
      - {name: a, address: %q, weight: %d}
      - {name: b, address: %q, weight: %d}
  - {name: echo, servers: [{name: s, address: %q}]}
`, web, routeTo[i%3], i, i, def, wsAddr, tcpAddr, bs[0].Addr, bs[1].Addr, bs[2].Addr,
			bs[0].Addr, 1+i%3, bs[1].Addr, 1+(i+1)%3, echo)
		if i%4 == 2 {
			// As editors and config-management tools do: a new file renamed over the old one.
			tmp := cfgPath + ".tmp"
			if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, cfgPath); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	ns := startNotifySocket(t)
	p := startWaageProc(t, bin, filepath.Join(dir, "waage.log"), []string{"NOTIFY_SOCKET=" + ns.path}, "run", "-c", cfgPath)
	p.waitLog(t, `msg="waage started"`, 1, 10*time.Second)
	if ns.count("READY=1", fmt.Sprintf("MAINPID=%d", p.cmd.Process.Pid)) != 1 {
		t.Errorf("no READY=1 with MAINPID at start: %q", ns.messages())
	}
	wsStill := dialWS(t, "ws://"+wsAddr+"/ws")
	wsChanging := dialWS(t, "ws://"+web+"/ws")
	session := dialSession(t, tcpAddr)

	stats, stop := startLoad(t, "http://"+web+"/", "http://"+web+"/r/x", "http://"+wsAddr+"/")
	start := time.Now()
	for i := 1; i <= 20; i++ {
		write(i)
		trigger := "file"
		if i%2 == 1 {
			trigger = "signal"
			p.cmd.Process.Signal(syscall.SIGHUP)
		}
		lines := p.waitLog(t, `msg="configuration reloaded"`, i, 10*time.Second)
		if got := lines[i-1]; !strings.Contains(got, "trigger="+trigger) {
			t.Errorf("reload %d: %s, want trigger=%s", i, got, trigger)
		}
		if code, by := getServedBy(t, "http://"+web+"/r/"); code != 200 || by != served[routeTo[i%3]] {
			t.Errorf("reload %d: /r/ answered %d by %q, want %s", i, code, by, served[routeTo[i%3]])
		}
		wsEcho(t, wsStill, fmt.Sprintf("unchanged frontend, reload %d", i))
		wsEcho(t, wsChanging, fmt.Sprintf("changed frontend, reload %d", i))
		session.echo(t, fmt.Sprintf("reload %d", i))
	}
	took := time.Since(start)
	time.Sleep(100 * time.Millisecond)
	stop()
	t.Logf("20 reloads in %s under load: %s", took.Round(time.Millisecond), stats)
	if stats.failed.Load() != 0 || stats.refused.Load() != 0 || stats.ok.Load() < 100 {
		t.Errorf("load across 20 reloads: %s", stats)
	}
	// Only the 20 changes were applied: the watcher skipped the files a SIGHUP had applied.
	time.Sleep(2 * watchDebounce)
	if n := strings.Count(p.text(), `msg="configuration reloaded"`); n != 20 {
		t.Errorf("%d reloads logged, want 20", n)
	}
	if r, ready := ns.count("RELOADING=1"), ns.count("READY=1"); r != 20 || ready != 21 {
		t.Errorf("sd_notify: %d RELOADING=1 and %d READY=1, want 20 and 21: %q", r, ready, ns.messages())
	}
	for _, m := range ns.messages() {
		if strings.HasPrefix(m, "RELOADING=1") && !strings.Contains(m, "\nMONOTONIC_USEC=") {
			t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m)
		}
	}

	// A file that does not parse is refused and logged; the old configuration keeps serving.
	if err := os.WriteFile(cfgPath, []byte("frontends: [{name: web, listen: [\"x\"]}]\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l := p.waitLog(t, "reload refused", 1, 5*time.Second); !strings.Contains(l[0], "trigger=file") || !strings.Contains(l[0], "bogus") {
		t.Errorf("refused reload logged as %s", l[0])
	}
	if code, by := getServedBy(t, "http://"+web+"/r/"); code != 200 || by != served[routeTo[20%3]] {
		t.Errorf("after a refused reload: /r/ answered %d by %q", code, by)
	}
	wsEcho(t, wsStill, "after the refused reload")
	session.echo(t, "after the refused reload")
}

// setSubreaper makes this test process adopt the processes orphaned below it, so that a waage
// started by an upgrade becomes its child when the old one exits and its exit status can be read.
func setSubreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
}

// waitPid waits for the exit of pid (a child, adopted or started) and returns its wait status.
func waitPid(t *testing.T, pid int, within time.Duration) syscall.WaitStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil {
			t.Fatalf("wait for process %d: %v", pid, err)
		}
		if got == pid {
			return syscall.WaitStatus(ws)
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not exit within %s", pid, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPidfile waits until the pid file names a process other than old.
func waitPidfile(t *testing.T, path string, old int, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if pid, err := readPidfile(path); err == nil && pid != old {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid file %s still names %d after %s", path, old, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUpgradeUnderLoad: binary upgrades (SIGUSR2, then `waage upgrade -pidfile`) under a client
// load of keep-alive and new connections: no request fails and no connection is refused; the new
// binary's process takes over the sockets (and announces itself to systemd with MAINPID), the old
// one drains a TCP session it still has and exits 0; an upgrade whose new process cannot start
// (an invalid config) leaves the running process serving.
func TestUpgradeUnderLoad(t *testing.T) {
	setSubreaper(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "waage")
	buildWaageAs(t, bin, "v1")
	buildWaageAs(t, bin+".v2", "v2")
	bs := startDemoBackends(t, "A", "B")
	echo := startTCPEcho(t)
	web, tcpAddr := freeAddr(t), freeAddr(t)
	udp := freeAddr(t)       // a UDP socket is handed over too
	adminAddr := freeAddr(t) // and the admin API's listener
	cfgPath := filepath.Join(dir, "waage.yaml")
	cfg := fmt.Sprintf(`log: {access: "off"}
admin: {listen: %q}
frontends:
  - {name: web, listen: [%q], default_backend: b}
  - {name: tcp, mode: tcp, listen: [%q], backend: echo}
  - {name: udp, mode: udp, listen: [%q], backend: echo}
backends:
  - {name: b, servers: [{name: a, address: %q}, {name: b, address: %q}]}
  - {name: echo, servers: [{name: s, address: %q}]}
`, adminAddr, web, tcpAddr, udp, bs[0].Addr, bs[1].Addr, echo)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	pidfile := filepath.Join(dir, "waage.pid")
	ns := startNotifySocket(t)
	p := startWaageProc(t, bin, filepath.Join(dir, "waage.log"), []string{"NOTIFY_SOCKET=" + ns.path},
		"run", "-c", cfgPath, "-pidfile", pidfile, "-shutdown-timeout", "10s")
	pids := []int{p.cmd.Process.Pid}
	t.Cleanup(func() {
		for _, pid := range pids[1:] {
			syscall.Kill(pid, syscall.SIGKILL)
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, 0, nil)
		}
	})
	if pid := waitPidfile(t, pidfile, 0, 10*time.Second); pid != pids[0] {
		t.Fatalf("pid file names %d, want %d", pid, pids[0])
	}
	stats, stop := startLoad(t, "http://"+web+"/")
	defer stop()
	time.Sleep(200 * time.Millisecond)

	// Upgrade 1: the binary on disk is replaced, then SIGUSR2.
	session := dialSession(t, tcpAddr) // stays with the old process while it drains
	session.echo(t, "before the upgrade")
	if err := os.Rename(bin+".v2", bin); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGUSR2)
	pid2 := waitPidfile(t, pidfile, pids[0], 10*time.Second)
	handover := time.Since(start)
	pids = append(pids, pid2)
	started := p.waitLog(t, "taking over from the previous process", 1, 5*time.Second)
	if !strings.Contains(started[0], "version=v2") {
		t.Errorf("the new process is not the new binary: %s", started[0])
	}
	if code, _ := getServedBy(t, "http://"+web+"/"); code != 200 {
		t.Errorf("after the upgrade: status %d", code)
	}
	errc := make(chan error, 1)
	go func() { errc <- p.cmd.Wait() }()
	// The old process has stopped accepting by now and drains: it still serves its session, and
	// waits for it.
	p.waitLog(t, "this one stops accepting and drains", 1, 5*time.Second)
	time.Sleep(acceptGrace + 100*time.Millisecond)
	session.echo(t, "during the drain")
	select {
	case err := <-errc:
		t.Fatalf("the old process exited (%v) with a connection still open", err)
	default:
	}
	session.c.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("old process after the upgrade: %v, want exit 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the old process did not exit within 5s of its last connection closing")
	}
	if ns.count(fmt.Sprintf("MAINPID=%d", pid2), "READY=1") != 1 {
		t.Errorf("the new process did not announce MAINPID=%d with READY=1: %q", pid2, ns.messages())
	}
	t.Logf("upgrade 1 (SIGUSR2): new process %d ready %s after the signal", pid2, handover.Round(time.Millisecond))

	// Upgrade 2, from the process an upgrade started, through `waage upgrade`.
	start = time.Now()
	out, err := exec.Command(bin, "upgrade", "-pidfile", pidfile, "-timeout", "10s").CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("took over from %d", pid2)) {
		t.Fatalf("waage upgrade: %v\n%s", err, out)
	}
	handover = time.Since(start)
	pid3, _ := readPidfile(pidfile)
	pids = append(pids, pid3)
	if ws := waitPid(t, pid2, 5*time.Second); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("second process after the upgrade: %v, want exit 0", ws)
	}
	t.Logf("upgrade 2 (waage upgrade): %s", strings.TrimSpace(string(out)))
	if n := len(p.waitLog(t, `msg="adopted inherited listener"`, 8, 5*time.Second)); n != 8 {
		t.Errorf("%d sockets adopted in two upgrades, want 8 (http, tcp, udp, admin)", n)
	}
	if code, _ := getServedBy(t, "http://"+adminAddr+"/metrics"); code != 200 {
		t.Errorf("admin API after two upgrades: status %d", code)
	}
	t.Logf("upgrade 2: new process %d ready %s after the command started", pid3, handover.Round(time.Millisecond))

	// Upgrade 3 fails: the new process refuses the config. The running one serves on.
	if err := os.WriteFile(cfgPath, []byte(cfg+"bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "upgrade", "-pidfile", pidfile, "-timeout", "10s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "upgrade failed") {
		t.Errorf("waage upgrade with a broken config: %v\n%s", err, out)
	}
	if l := p.waitLog(t, "upgrade failed; this process keeps serving", 1, 5*time.Second); !strings.Contains(l[0], "ended before it was ready") {
		t.Errorf("failed upgrade logged as %s", l[0])
	}
	if pid, _ := readPidfile(pidfile); pid != pid3 {
		t.Errorf("after a failed upgrade the pid file names %d, want %d", pid, pid3)
	}
	if code, _ := getServedBy(t, "http://"+web+"/"); code != 200 {
		t.Errorf("after a failed upgrade: status %d", code)
	}
	after := dialSession(t, tcpAddr)
	after.echo(t, "after a failed upgrade")
	after.c.Close()
	time.Sleep(200 * time.Millisecond)
	stop()
	t.Logf("load across 3 upgrades: %s", stats)
	if stats.failed.Load() != 0 || stats.refused.Load() != 0 || stats.ok.Load() < 100 {
		t.Errorf("load across the upgrades: %s", stats)
	}

	syscall.Kill(pid3, syscall.SIGTERM)
	if ws := waitPid(t, pid3, 10*time.Second); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("last process after SIGTERM: %v, want exit 0", ws)
	}
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pid file left after the last process stopped: %v", err)
	}
	want := [][]string{
		{"READY=1", fmt.Sprintf("MAINPID=%d", pids[0])},
		{"RELOADING=1"}, // each upgrade starts as a reload
		{"READY=1", fmt.Sprintf("MAINPID=%d", pid3)},
		{"STOPPING=1"},
	}
	for _, w := range want {
		if ns.count(w...) == 0 {
			t.Errorf("sd_notify: no message with %q: %q", w, ns.messages())
		}
	}
	if n := ns.count("RELOADING=1"); n < 3 {
		t.Errorf("sd_notify: %d RELOADING=1, want one per upgrade (3): %q", n, ns.messages())
	}
}

// TestStopDrains: SIGTERM with a request in flight to a slow server, a TCP session and a WebSocket
// open: new connections are refused at once, the request completes, the session and the WebSocket
// work until the client closes them, then waage exits 0 (and tells systemd STOPPING=1).
func TestStopDrains(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "waage")
	buildWaageAs(t, bin, "stop-test")
	bs := startDemoBackends(t, "A")
	echo := startTCPEcho(t)
	web, tcpAddr := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "waage.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`log: {access: "off"}
frontends:
  - {name: web, listen: [%q], default_backend: b}
  - {name: tcp, mode: tcp, listen: [%q], backend: echo}
backends:
  - {name: b, servers: [{name: a, address: %q}]}
  - {name: echo, servers: [{name: s, address: %q}]}
`, web, tcpAddr, bs[0].Addr, echo)), 0o644)
	ns := startNotifySocket(t)
	p := startWaageProc(t, bin, filepath.Join(dir, "waage.log"), []string{"NOTIFY_SOCKET=" + ns.path},
		"run", "-c", cfgPath, "-shutdown-timeout", "10s")
	p.waitLog(t, `msg="waage started"`, 1, 10*time.Second)
	session := dialSession(t, tcpAddr)
	ws := dialWS(t, "ws://"+web+"/ws")

	slow := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Get("http://" + web + "/slow?ms=1000")
		if err != nil {
			slow <- err.Error()
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slow <- resp.Status
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()

	// New connections are refused once the listeners are closed (right after the signal).
	// The dials get 5s: with the whole suite running under the race detector, a dial here once
	// timed out after 1s.
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", web, 5*time.Second)
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("dial during the drain: %v, want connection refused", err)
			}
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("new connections still accepted 2s after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial the tcp frontend during the drain: %v, want connection refused", err)
	}
	if got := <-slow; got != "200 OK" {
		t.Errorf("request in flight at SIGTERM: %s", got)
	}
	session.echo(t, "during the drain")
	wsEcho(t, ws, "during the drain")
	select {
	case err := <-exited:
		t.Fatalf("exited (%v) with a TCP session and a WebSocket still open", err)
	case <-time.After(100 * time.Millisecond):
	}
	session.c.Close()
	ws.Close(websocket.StatusNormalClosure, "")
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit 5s after the last connection closed")
	}
	t.Logf("drained and exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if ns.count("STOPPING=1") != 1 {
		t.Errorf("sd_notify: no STOPPING=1: %q", ns.messages())
	}
}

// TestSystemdUnit: examples/waage.service passes `systemd-analyze verify` (with the binary path
// pointing at an executable that exists here) and has what reloads and upgrades rely on.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join(repoRoot, "examples", "waage.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nType=notify\n", "\nNotifyAccess=all\n", "\nExecReload=/bin/kill -HUP $MAINPID\n", "-pidfile /run/waage/waage.pid"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd); the unit is not verified")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "waage.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/waage", self)), 0o644)
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSDNotify: the messages reach a socket by path and one in the abstract namespace ('@').
func TestSDNotify(t *testing.T) {
	ns := startNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", ns.path)
	if err := sdNotify(sdReady("serving")); err != nil {
		t.Fatal(err)
	}
	abstract := fmt.Sprintf("@waage-test-%d", os.Getpid())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + abstract[1:], Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", abstract)
	if err := sdNotify(sdReloading()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("abstract socket got %q %v", buf[:n], err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ns.count("READY=1", fmt.Sprintf("MAINPID=%d", os.Getpid())) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("path socket got %q", ns.messages())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
}

// TestUpgradeWait: the old process's wait for the new one's readiness: "ready" on the pipe is
// success; a process that exits first, or stays silent past the timeout (it is killed then), is a
// failure that says why.
func TestUpgradeWait(t *testing.T) {
	tests := []struct {
		name, script string
		timeout      time.Duration
		want         string // "" = ready
	}{
		{"ready", `echo "ready $$" >&3; sleep 0.2`, 5 * time.Second, ""},
		{"exits first", `exit 3`, 5 * time.Second, "ended before it was ready (exit status 3)"},
		{"silent", `exec sleep 10`, 200 * time.Millisecond, "was not ready within 200ms; killed it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sh", "-c", tt.script)
			cmd.ExtraFiles = []*os.File{w}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			u := &upgrade{cmd: cmd, pid: cmd.Process.Pid, start: time.Now(), done: make(chan error, 1)}
			go u.wait(r, tt.timeout)
			var got error
			select {
			case got = <-u.done:
			case <-time.After(10 * time.Second):
				t.Fatal("no outcome")
			}
			if tt.want == "" {
				if got != nil {
					t.Errorf("outcome %v, want ready", got)
				}
				waitPid(t, u.pid, 5*time.Second) // released: reap it here
				return
			}
			if got == nil || !strings.Contains(got.Error(), tt.want) {
				t.Errorf("outcome %v, want %q", got, tt.want)
			}
		})
	}
}
