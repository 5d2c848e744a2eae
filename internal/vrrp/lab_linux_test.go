package vrrp

// The network-namespace lab of the end-to-end tests: a switch namespace holding a bridge, and
// one namespace per host with an eth0 veth plugged into it. Everything lives inside namespaces
// the test creates (10.99.x.y/24 addresses); the host's own interfaces are never touched.
// Processes run inside the hosts with `ip netns exec`, and are killed by PID, and the
// namespaces deleted, when the test ends, failed or not.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestMain lets the test binary serve as the helper processes of the lab (a name server in a
// balancer's namespace, a client load in the client's) when started with WAAGE_VRRP_HELPER.
func TestMain(m *testing.M) {
	switch os.Getenv("WAAGE_VRRP_HELPER") {
	case "":
		code := m.Run()
		if waageBin != "" {
			os.RemoveAll(filepath.Dir(waageBin))
		}
		os.Exit(code)
	case "name-server":
		os.Exit(nameServer(os.Getenv("WAAGE_HELPER_ADDR"), os.Getenv("WAAGE_HELPER_NAME")))
	case "client":
		os.Exit(clientLoad(os.Getenv("WAAGE_HELPER_URL")))
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv("WAAGE_VRRP_HELPER"))
		os.Exit(2)
	}
}

// nameServer answers every HTTP request with its name: the backend behind each balancer, so
// the client can tell which balancer holds the VIP.
func nameServer(addr, name string) int {
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	})}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// clientLoad requests url every 20ms on a new connection with a 150ms timeout and prints one
// line per request: the Unix time in nanoseconds and the answer, or ERR. It runs until killed,
// at most two minutes.
func clientLoad(url string) int {
	c := &http.Client{Timeout: 150 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	out := bufio.NewWriter(os.Stdout)
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); {
		start := time.Now()
		answer := "ERR"
		if resp, err := c.Get(url); err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == 200 {
				answer = string(b)
			}
		}
		fmt.Fprintf(out, "%d %s\n", start.UnixNano(), answer)
		out.Flush()
		time.Sleep(20*time.Millisecond - time.Since(start)%(20*time.Millisecond))
	}
	return 0
}

// lab is one set of namespaces on a bridge.
type lab struct {
	t      *testing.T
	prefix string
	net    int // third octet of 10.99.net.0/24
	hosts  map[string]int
	dir    string
	mu     sync.Mutex
	procs  []*proc
}

// needLab skips the test unless it can build namespaces: root and the ip tool.
func needLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: network-namespace tests need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: the ip tool (iproute2) is not installed")
	}
	if testing.Short() {
		t.Skip("skipped in -short mode: network-namespace test")
	}
}

// newLab creates the switch and one namespace per host; host i (from 1) gets 10.99.net.i/24 on
// eth0.
func newLab(t *testing.T, net int, hosts ...string) *lab {
	t.Helper()
	l := &lab{t: t, prefix: fmt.Sprintf("wv%d-%d", os.Getpid()%100000, net), net: net, hosts: map[string]int{}, dir: t.TempDir()}
	t.Cleanup(l.destroy)
	sw := l.ns("sw")
	l.ip("netns", "add", sw)
	l.ip("-n", sw, "link", "add", "br0", "type", "bridge")
	l.ip("-n", sw, "link", "set", "br0", "up")
	for i, h := range hosts {
		l.hosts[h] = i + 1
		ns := l.ns(h)
		port := "p" + strconv.Itoa(i+1)
		l.ip("netns", "add", ns)
		l.ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.ip("-n", sw, "link", "set", port, "master", "br0", "up")
		l.ip("-n", ns, "link", "set", "lo", "up")
		l.ip("-n", ns, "addr", "add", l.addr(h).String()+"/24", "dev", "eth0")
		l.ip("-n", ns, "link", "set", "eth0", "up")
	}
	return l
}

func (l *lab) ns(host string) string { return l.prefix + host }

// addr is a host's own address.
func (l *lab) addr(host string) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 99, byte(l.net), byte(l.hosts[host])})
}

// vip is the lab's virtual IP, 10.99.net.100.
func (l *lab) vip() netip.Addr { return netip.AddrFrom4([4]byte{10, 99, byte(l.net), 100}) }

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// destroy kills every process still running, then deletes the namespaces.
func (l *lab) destroy() {
	l.mu.Lock()
	procs := l.procs
	l.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	if l.t.Failed() {
		for _, p := range procs {
			p.dumpLog(l.t)
		}
	}
	for _, h := range append([]string{"sw"}, l.hostNames()...) {
		exec.Command("ip", "netns", "del", l.ns(h)).Run()
	}
}

func (l *lab) hostNames() []string {
	names := make([]string, 0, len(l.hosts))
	for h := range l.hosts {
		names = append(names, h)
	}
	return names
}

// proc is a process the lab started in a host.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	once sync.Once
}

// start runs a program in host's namespace, its output to a log file (or to stdout if given).
func (l *lab) start(host, name string, env []string, stdout io.Writer, prog string, args ...string) *proc {
	l.t.Helper()
	p := &proc{name: name, log: filepath.Join(l.dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		l.t.Fatal(err)
	}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", l.ns(host), prog}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	// Its own process group: keepalived forks a child, and a kill must reach both.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		l.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p
}

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) {
	if pid := p.cmd.Process.Pid; pid > 0 {
		syscall.Kill(-pid, sig)
	}
}

// kill sends SIGKILL to the process group and waits for the process.
func (p *proc) kill() {
	p.once.Do(func() {
		p.signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	})
}

// stop sends SIGTERM and waits up to limit for the process to exit, then kills it.
func (p *proc) stop(t *testing.T, limit time.Duration) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Errorf("%s did not exit within %v of SIGTERM", p.name, limit)
		p.kill()
	}
}

func (p *proc) dumpLog(t *testing.T) {
	data, err := os.ReadFile(p.log)
	if err != nil || len(data) == 0 {
		return
	}
	if len(data) > 6000 {
		data = data[len(data)-6000:]
	}
	t.Logf("--- %s log (tail) ---\n%s", p.name, data)
}

// holds reports whether host has the address on eth0, through netlink in its namespace.
func (l *lab) holds(host string, a netip.Addr) bool {
	l.t.Helper()
	h, err := netns.GetFromName(l.ns(host))
	if err != nil {
		l.t.Fatalf("namespace %s: %v", host, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		l.t.Fatalf("netlink in %s: %v", host, err)
	}
	defer nh.Close()
	link, err := nh.LinkByName("eth0")
	if err != nil {
		l.t.Fatalf("eth0 in %s: %v", host, err)
	}
	list, err := nh.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		l.t.Fatalf("addresses in %s: %v", host, err)
	}
	for _, ad := range list {
		if ip, ok := netip.AddrFromSlice(ad.IP); ok && ip.Unmap() == a {
			return true
		}
	}
	return false
}

// waitFor polls cond every 5ms until it holds and returns how long that took, or fails the test
// after limit.
func (l *lab) waitFor(what string, limit time.Duration, cond func() bool) time.Duration {
	l.t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			l.t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitVIP waits until host holds the VIP and returns how long that took.
func (l *lab) waitVIP(host string, limit time.Duration) time.Duration {
	l.t.Helper()
	return l.waitFor(host+" holds the VIP", limit, func() bool { return l.holds(host, l.vip()) })
}

// waitNoVIP waits until host no longer holds the VIP.
func (l *lab) waitNoVIP(host string, limit time.Duration) time.Duration {
	l.t.Helper()
	return l.waitFor(host+" released the VIP", limit, func() bool { return !l.holds(host, l.vip()) })
}

var (
	buildOnce sync.Once
	waageBin  string
	buildErr  error
)

// buildWaage builds the waage binary once per test run.
func buildWaage(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "waage-vrrp-bin-")
		if err != nil {
			buildErr = err
			return
		}
		waageBin = filepath.Join(dir, "waage")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", waageBin, "../../cmd/waage").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return waageBin
}

// helper starts this test binary as a helper process in host.
func (l *lab) helper(host, name string, stdout io.Writer, env ...string) *proc {
	l.t.Helper()
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	return l.start(host, name, env, stdout, self)
}

// waage writes a config file and runs waage with it in host.
func (l *lab) waage(host, name, config string) *proc {
	l.t.Helper()
	path := filepath.Join(l.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return l.start(host, name, nil, nil, buildWaage(l.t), "run", "-c", path)
}

// errNoLine is returned by sample readers when the client printed nothing parseable.
var errNoLine = errors.New("no line")

// sample is one request of the client load.
type sample struct {
	at     time.Time
	answer string
}

// loadRecorder collects the client load's lines.
type loadRecorder struct {
	mu      sync.Mutex
	samples []sample
	partial []byte
}

func (r *loadRecorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.partial = append(r.partial, b...)
	for {
		i := strings.IndexByte(string(r.partial), '\n')
		if i < 0 {
			break
		}
		if s, err := parseSample(string(r.partial[:i])); err == nil {
			r.samples = append(r.samples, s)
		}
		r.partial = r.partial[i+1:]
	}
	return len(b), nil
}

func parseSample(line string) (sample, error) {
	ts, answer, ok := strings.Cut(line, " ")
	if !ok {
		return sample{}, errNoLine
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return sample{}, err
	}
	return sample{time.Unix(0, n), answer}, nil
}

// since returns the samples taken at or after t.
func (r *loadRecorder) since(t time.Time) []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sample
	for _, s := range r.samples {
		if !s.at.Before(t) {
			out = append(out, s)
		}
	}
	return out
}

// lastAnswer returns the answer of the latest sample.
func (r *loadRecorder) lastAnswer() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return ""
	}
	return r.samples[len(r.samples)-1].answer
}
