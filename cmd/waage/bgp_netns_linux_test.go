//go:build linux

package main

// Active/active behind a real router: BIRD 2 in one network namespace peers with two waage
// processes in two others, which announce one virtual IP; a client in a fourth connects to it.
// Every process runs in its namespace through `ip netns exec` (the test process never enters a
// namespace: the BGP speaker's goroutines would open their sockets in the wrong one). Needs root,
// ip (iproute2) and bird (Debian bird2); nft (nftables) for the part that pins flows on the router.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"github.com/waage/waage/internal/adminapi"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helper processes of the test binary, run inside the namespaces: WAAGE_BGP_HELPER picks one.
func init() {
	if mode := os.Getenv("WAAGE_BGP_HELPER"); mode != "" {
		os.Exit(bgpHelper(mode))
	}
}

// bgpHelper runs one helper:
//   - server: listens on WAAGE_HELPER_ADDR; each connection gets WAAGE_HELPER_NAME and a newline,
//     then every line it sends comes back.
//   - client: opens WAAGE_HELPER_N connections to WAAGE_HELPER_ADDR one after the other and prints
//     the name each one got (or "error").
//   - hold: connects to WAAGE_HELPER_ADDR until the name is WAAGE_HELPER_WANT, prints it, then
//     sends each line of stdin over that connection and prints "ok" and the echo, or the error.
func bgpHelper(mode string) int {
	addr, name := os.Getenv("WAAGE_HELPER_ADDR"), os.Getenv("WAAGE_HELPER_NAME")
	switch mode {
	case "server":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", name)
				io.Copy(c, c)
			}()
		}
	case "client":
		var n int
		fmt.Sscan(os.Getenv("WAAGE_HELPER_N"), &n)
		for range n {
			got, _, err := dialName(addr)
			if err != nil {
				got = "error"
			}
			fmt.Println(got)
		}
		return 0
	case "hold":
		want := os.Getenv("WAAGE_HELPER_WANT")
		var c net.Conn
		var r *bufio.Reader
		for range 50 {
			got, conn, err := dialName(addr)
			if err == nil && got == want {
				c, r = conn, bufio.NewReader(conn)
				break
			}
			if conn != nil {
				conn.Close()
			}
		}
		if c == nil {
			fmt.Println("never reached", want)
			return 1
		}
		fmt.Println(want)
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			_, err := fmt.Fprintf(c, "%s\n", in.Text())
			var line string
			if err == nil {
				line, err = r.ReadString('\n')
			}
			if err != nil {
				fmt.Println("error", err)
				c.Close() // as a client does with a connection that failed
				continue
			}
			fmt.Println("ok", strings.TrimSpace(line))
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper", mode)
	return 2
}

// dialName connects and reads the server's name line; the connection stays open.
func dialName(addr string) (string, net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", nil, err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	// One byte at a time: the rest of the stream belongs to the caller.
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			c.Close()
			return "", nil, err
		}
		if one[0] == '\n' {
			break
		}
		b = append(b, one[0])
	}
	c.SetReadDeadline(time.Time{})
	return string(b), c, nil
}

// bgpLab is the four namespaces and the processes in them.
type bgpLab struct {
	t      *testing.T
	prefix string
	dir    string
	bin    string // waage
	procs  map[string]*exec.Cmd
}

const bgpVIP = "10.250.100.1"

func (l *bgpLab) ns(host string) string { return l.prefix + "-" + host }

// ip runs ip(8) and fails the test on an error.
func (l *bgpLab) ip(args ...string) string {
	l.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start runs a command in host's namespace as a process of the lab, named name, with its output
// in a file.
func (l *bgpLab) start(host, name string, stdin *os.File, env []string, args ...string) *exec.Cmd {
	l.t.Helper()
	f, err := os.Create(filepath.Join(l.dir, name+".log"))
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(host)}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if stdin != nil {
		cmd.Stdin = stdin
	}
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.procs[name] = cmd
	return cmd
}

// kill stops a process of the lab by its PID.
func (l *bgpLab) kill(name string, sig syscall.Signal) {
	if cmd := l.procs[name]; cmd != nil {
		cmd.Process.Signal(sig)
		cmd.Wait()
		delete(l.procs, name)
	}
}

func (l *bgpLab) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(l.dir, name+".log"))
	return string(b)
}

// helper runs the test binary as a helper process in host.
func (l *bgpLab) helper(host, name string, stdin *os.File, env ...string) *exec.Cmd {
	return l.start(host, name, stdin, env, os.Args[0], "-test.run=^$")
}

// nexthops returns the router's next hops for the prefix, sorted.
func (l *bgpLab) nexthops(prefix string) []string {
	out, err := exec.Command("ip", "-n", l.ns("r"), "-4", "route", "show", "exact", prefix).CombinedOutput()
	if err != nil {
		l.t.Fatalf("ip route: %v\n%s", err, out)
	}
	var hops []string
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" {
			hops = append(hops, f[i+1])
		}
	}
	slices.Sort(hops)
	return hops
}

// waitHops waits until the router's next hops for prefix are want and returns how long it took
// from start, polling as fast as ip(8) runs.
func (l *bgpLab) waitHops(prefix string, start time.Time, limit time.Duration, want ...string) time.Duration {
	l.t.Helper()
	slices.Sort(want)
	for {
		got := l.nexthops(prefix)
		if slices.Equal(got, want) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			l.t.Fatalf("%s: next hops %v after %s, want %v\nbird:\n%s", prefix, got, limit, want, l.birdc("show", "protocols", "all"))
		}
		time.Sleep(time.Millisecond)
	}
}

func (l *bgpLab) birdc(args ...string) string {
	out, _ := exec.Command("ip", append([]string{"netns", "exec", l.ns("r"), "birdc", "-s", filepath.Join(l.dir, "bird.ctl")}, args...)...).CombinedOutput()
	return string(out)
}

// ctl runs `waage ctl` against the waage in host.
func (l *bgpLab) ctl(host string, args ...string) string {
	l.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(host), l.bin, "ctl", "-a", "127.0.0.1:9900", "-token", "secret"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("waage ctl %s on %s: %v\n%s", strings.Join(args, " "), host, err, out)
	}
	return string(out)
}

// clients opens n connections from the client namespace to the virtual IP and counts the answers
// by balancer.
func (l *bgpLab) clients(n int) map[string]int {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns("c"), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WAAGE_BGP_HELPER=client", "WAAGE_HELPER_ADDR="+bgpVIP+":8080", fmt.Sprintf("WAAGE_HELPER_N=%d", n))
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("client: %v\n%s", err, out)
	}
	counts := map[string]int{}
	for _, line := range strings.Fields(string(out)) {
		counts[line]++
	}
	return counts
}

// waageConfig is a balancer's configuration: a tcp frontend on the virtual IP whose backend is
// the helper server beside it, announced over BGP to the router.
func waageConfig(i int, announce ...string) string {
	quoted := make([]string, len(announce))
	for k, a := range announce {
		quoted[k] = `"` + a + `"`
	}
	return fmt.Sprintf(`admin: {listen: "127.0.0.1:9900", token: secret}
log: {level: info, access: "off"}
shutdown_timeout: 5s
frontends:
  - name: vip
    mode: tcp
    listen: ["%[2]s:8080"]
    backend: web
backends:
  - name: web
    servers: [{name: app, address: "127.0.0.1:9001"}]
    health_check: {type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1}
bgp:
  local_as: 65001
  router_id: 10.250.%[1]d.2
  peers: [{address: 10.250.%[1]d.1, as: 65000, hold_time: 3s, keepalive: 1s}]
  announce: [%[3]s]
  track_backends: [web]
`, i, bgpVIP, strings.Join(quoted, ", "))
}

const birdConf = `protocol device {}
protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; merge paths yes limit 16; learn no; }
template bgp lbs { local as 65000; hold time 3; keepalive time 1; connect delay time 1; connect retry time 2;
  error wait time 1,1; ipv4 { import where net ~ [ 10.250.100.0/24{32,32} ]; export none; }; }
protocol bgp lb1 from lbs { neighbor 10.250.1.2 as 65001; }
protocol bgp lb2 from lbs { neighbor 10.250.2.2 as 65001; }
`

// newBGPLab builds the namespaces, starts BIRD, the helper servers and both balancers.
func newBGPLab(t *testing.T) *bgpLab {
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "bird", "birdc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s not found (scripts/test-deps.sh installs it)", tool)
		}
	}
	l := &bgpLab{t: t, prefix: fmt.Sprintf("wbgp%d", os.Getpid()%100000), dir: t.TempDir(), procs: map[string]*exec.Cmd{}}
	l.bin = buildWaage(t)
	t.Cleanup(func() {
		if t.Failed() {
			ls, _ := exec.Command("ls", "-la", l.dir).CombinedOutput()
			t.Logf("%s", ls)
			logs, _ := filepath.Glob(filepath.Join(l.dir, "*.log"))
			for _, f := range logs {
				name := strings.TrimSuffix(filepath.Base(f), ".log")
				t.Logf("%s:\n%s", name, l.log(name))
			}
		}
		for name := range l.procs {
			l.kill(name, syscall.SIGKILL)
		}
		for _, h := range []string{"r", "lb1", "lb2", "c"} {
			exec.Command("ip", "netns", "del", l.ns(h)).Run()
		}
	})
	for _, h := range []string{"r", "lb1", "lb2", "c"} {
		l.ip("netns", "add", l.ns(h))
		l.ip("-n", l.ns(h), "link", "set", "lo", "up")
	}
	for i, h := range []string{"lb1", "lb2"} {
		n := i + 1
		l.ip("link", "add", "r-"+h, "netns", l.ns("r"), "type", "veth", "peer", "name", "eth0", "netns", l.ns(h))
		l.ip("-n", l.ns("r"), "addr", "add", fmt.Sprintf("10.250.%d.1/30", n), "dev", "r-"+h)
		l.ip("-n", l.ns("r"), "link", "set", "r-"+h, "up")
		l.ip("-n", l.ns(h), "addr", "add", fmt.Sprintf("10.250.%d.2/30", n), "dev", "eth0")
		l.ip("-n", l.ns(h), "link", "set", "eth0", "up")
		l.ip("-n", l.ns(h), "addr", "add", bgpVIP+"/32", "dev", "lo")
		l.ip("-n", l.ns(h), "route", "add", "default", "via", fmt.Sprintf("10.250.%d.1", n))
	}
	l.ip("link", "add", "r-c", "netns", l.ns("r"), "type", "veth", "peer", "name", "eth0", "netns", l.ns("c"))
	l.ip("-n", l.ns("r"), "addr", "add", "10.250.9.1/30", "dev", "r-c")
	l.ip("-n", l.ns("r"), "link", "set", "r-c", "up")
	l.ip("-n", l.ns("c"), "addr", "add", "10.250.9.2/30", "dev", "eth0")
	l.ip("-n", l.ns("c"), "link", "set", "eth0", "up")
	l.ip("-n", l.ns("c"), "route", "add", "default", "via", "10.250.9.1")
	for _, k := range []string{"net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"} {
		if out, err := exec.Command("ip", "netns", "exec", l.ns("r"), "sysctl", "-qw", k).CombinedOutput(); err != nil {
			t.Fatalf("sysctl %s: %v\n%s", k, err, out)
		}
	}
	conf := filepath.Join(l.dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(birdConf), 0o644); err != nil {
		t.Fatal(err)
	}
	l.start("r", "bird", nil, nil, "bird", "-f", "-c", conf, "-s", filepath.Join(l.dir, "bird.ctl"), "-P", filepath.Join(l.dir, "bird.pid"))
	for i, h := range []string{"lb1", "lb2"} {
		l.helper(h, "app-"+h, nil, "WAAGE_BGP_HELPER=server", "WAAGE_HELPER_ADDR=127.0.0.1:9001", "WAAGE_HELPER_NAME="+h)
		l.startWaage(h, waageConfig(i+1, bgpVIP+"/32"))
	}
	return l
}

func (l *bgpLab) startWaage(host, cfg string) {
	l.t.Helper()
	path := filepath.Join(l.dir, host+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		l.t.Fatal(err)
	}
	l.start(host, "waage-"+host, nil, nil, l.bin, "run", "-c", path, "-watch=false")
}

// pinFlows makes the router keep each established connection on the balancer it started on,
// through conntrack marks and policy routing, as a stateful router does; a plain ECMP router
// hashes a withdrawn next hop's flows onto the others. False when nft is missing.
func (l *bgpLab) pinFlows() bool {
	if _, err := exec.LookPath("nft"); err != nil {
		return false
	}
	rules := `table ip pin {
  chain pre { type filter hook prerouting priority -150; policy accept; ct state established,related meta mark set ct mark; }
  chain post { type filter hook postrouting priority -150; policy accept;
    ct state new oifname "r-lb1" ct mark set 1
    ct state new oifname "r-lb2" ct mark set 2
  }
}
`
	path := filepath.Join(l.dir, "pin.nft")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", l.ns("r"), "nft", "-f", path).CombinedOutput(); err != nil {
		l.t.Fatalf("nft: %v\n%s", err, out)
	}
	for n := 1; n <= 2; n++ {
		table := fmt.Sprint(100 + n)
		l.ip("-n", l.ns("r"), "rule", "add", "fwmark", fmt.Sprint(n), "table", table)
		l.ip("-n", l.ns("r"), "route", "add", bgpVIP+"/32", "via", fmt.Sprintf("10.250.%d.2", n), "table", table)
	}
	return true
}

// TestBGPActiveActive: both balancers announce the virtual IP and share new connections; a drain
// withdraws one at once while its open connection keeps working; tracking withdraws a balancer
// without a healthy server and announces it again; a reload adds a prefix without touching the
// session; a killed balancer's route goes. The times are logged to be quoted in docs/bgp.md.
func TestBGPActiveActive(t *testing.T) {
	l := newBGPLab(t)
	both := []string{"10.250.1.2", "10.250.2.2"}
	start := time.Now()
	up := l.waitHops(bgpVIP+"/32", start, 15*time.Second, both...)
	t.Logf("both balancers announced %s/32 %s after they started (router: two next hops)", bgpVIP, up.Round(time.Millisecond))

	counts := l.clients(40)
	t.Logf("40 new connections: %v", counts)
	if counts["lb1"] == 0 || counts["lb2"] == 0 || counts["lb1"]+counts["lb2"] != 40 {
		t.Errorf("40 connections over both balancers: got %v", counts)
	}

	pinned := l.pinFlows()
	var holdIn io.Writer
	if pinned {
		holdIn = l.hold("hold", "lb1")
	} else {
		t.Log("nft not found: the established connections through a drained or stopping balancer are not checked")
	}

	// Drain lb1: its next hop leaves, new connections all go to lb2.
	start = time.Now()
	out := l.ctl("lb1", "node", "drain")
	ctlTook := time.Since(start)
	took := l.waitHops(bgpVIP+"/32", start, 5*time.Second, "10.250.2.2")
	t.Logf("drain: one next hop %s after `waage ctl node drain` started (ctl itself took %s): %s", took.Round(time.Millisecond), ctlTook.Round(time.Millisecond), strings.TrimSpace(out))
	if took > 500*time.Millisecond {
		t.Errorf("drain took %s to reach the router", took)
	}
	if counts := l.clients(40); counts["lb2"] != 40 {
		t.Errorf("after the drain, 40 connections should all go to lb2: %v", counts)
	}
	if pinned {
		if got := l.ping("hold", holdIn, "ping-after-drain"); got != "ok ping-after-drain" {
			t.Errorf("the connection established through lb1 broke after the drain: %q", got)
		} else {
			t.Log("the connection established through lb1 still works after the drain")
		}
		l.kill("hold", syscall.SIGKILL)
	}
	if st := l.ctl("lb1", "bgp"); !strings.Contains(st, "withdrawn") || !strings.Contains(st, "drained") {
		t.Errorf("ctl bgp on the drained lb1:\n%s", st)
	}

	start = time.Now()
	l.ctl("lb1", "node", "undrain")
	took = l.waitHops(bgpVIP+"/32", start, 5*time.Second, both...)
	t.Logf("undrain: two next hops again %s after `waage ctl node undrain` started", took.Round(time.Millisecond))

	// Tracking: lb1's only server goes away, then comes back.
	start = time.Now()
	l.kill("app-lb1", syscall.SIGKILL)
	took = l.waitHops(bgpVIP+"/32", start, 5*time.Second, "10.250.2.2")
	t.Logf("tracking: lb1 withdrawn %s after its only server died (health check interval 100ms, fall 1)", took.Round(time.Millisecond))
	start = time.Now()
	l.helper("lb1", "app-lb1", nil, "WAAGE_BGP_HELPER=server", "WAAGE_HELPER_ADDR=127.0.0.1:9001", "WAAGE_HELPER_NAME=lb1")
	took = l.waitHops(bgpVIP+"/32", start, 5*time.Second, both...)
	t.Logf("tracking: lb1 announced again %s after its server came back", took.Round(time.Millisecond))

	// Reload by difference: a second prefix joins without a new session.
	before := l.peerSince(t, "lb1")
	start = time.Now()
	if err := os.WriteFile(filepath.Join(l.dir, "lb1.yaml"), []byte(waageConfig(1, bgpVIP+"/32", "10.250.100.2/32")), 0o644); err != nil {
		t.Fatal(err)
	}
	l.procs["waage-lb1"].Process.Signal(syscall.SIGHUP)
	took = l.waitHops("10.250.100.2/32", start, 5*time.Second, "10.250.1.2")
	t.Logf("reload: the added prefix reached the router %s after SIGHUP", took.Round(time.Millisecond))
	if after := l.peerSince(t, "lb1"); !after.Equal(before) {
		t.Errorf("the reload restarted the session: up since %s, before %s", after, before)
	}
	if hops := l.nexthops(bgpVIP + "/32"); !slices.Equal(hops, both) {
		t.Errorf("after the reload: next hops %v", hops)
	}

	// Shared fate: lb2's waage is killed; the kernel closes its session and its route goes.
	start = time.Now()
	l.kill("waage-lb2", syscall.SIGKILL)
	took = l.waitHops(bgpVIP+"/32", start, 5*time.Second, "10.250.1.2")
	t.Logf("SIGKILL of lb2's waage: its next hop gone %s later", took.Round(time.Millisecond))
	if counts := l.clients(10); counts["lb1"] != 10 {
		t.Errorf("after lb2 died, connections should all go to lb1: %v", counts)
	}

	// SIGTERM: the route goes first; an open connection is served on until it ends.
	if pinned {
		holdIn = l.hold("hold2", "lb1")
	}
	start = time.Now()
	waage1 := l.procs["waage-lb1"]
	waage1.Process.Signal(syscall.SIGTERM)
	took = l.waitHops(bgpVIP+"/32", start, 5*time.Second)
	t.Logf("SIGTERM of lb1's waage: its route gone %s later", took.Round(time.Millisecond))
	if pinned {
		time.Sleep(time.Second) // past the moment waage stops accepting
		if got := l.ping("hold2", holdIn, "ping-while-stopping"); got != "ok ping-while-stopping" {
			t.Errorf("the open connection through lb1 broke when it began to stop: %q", got)
		} else {
			t.Logf("the open connection through lb1 still works %s after SIGTERM", time.Since(start).Round(time.Millisecond))
		}
		l.kill("hold2", syscall.SIGKILL) // the client hangs up; waage has nothing left to wait for
	}
	exited := make(chan struct{})
	go func() { waage1.Wait(); close(exited) }()
	select {
	case <-exited:
		delete(l.procs, "waage-lb1")
		t.Logf("lb1's waage exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
		if os.Getenv("WAAGE_BGP_DEBUG") != "" {
			t.Logf("%s", l.log("waage-lb1"))
		}
	case <-time.After(8 * time.Second):
		t.Errorf("lb1's waage still runs 8s after SIGTERM (shutdown_timeout 5s)")
	}
	if log := l.log("waage-lb1"); !strings.Contains(log, `msg="bgp withdraw" prefixes=10.250.100.1/32,10.250.100.2/32 reason="shutting down"`) {
		t.Errorf("no withdrawal logged at shutdown:\n%s", log)
	}
}

// hold starts a client that keeps one connection through the balancer want open, and returns
// where to write the lines it sends over it.
func (l *bgpLab) hold(name, want string) io.Writer {
	l.t.Helper()
	// A real pipe, not an io.Pipe: exec would copy from that in a goroutine that Wait waits for.
	r, w, err := os.Pipe()
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { w.Close() })
	l.helper("c", name, r, "WAAGE_BGP_HELPER=hold", "WAAGE_HELPER_ADDR="+bgpVIP+":8080", "WAAGE_HELPER_WANT="+want)
	r.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(l.log(name), want+"\n") {
		if time.Now().After(deadline) {
			l.t.Fatalf("no connection through %s: %s", want, l.log(name))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return w
}

// ping sends a line over a hold client's connection and returns its answer: "ok" and the echo,
// or the error.
func (l *bgpLab) ping(name string, w io.Writer, line string) string {
	fmt.Fprintln(w, line)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		lines := strings.Split(strings.TrimSpace(l.log(name)), "\n")
		if last := lines[len(lines)-1]; strings.Contains(last, line) || strings.HasPrefix(last, "error") {
			return last
		}
		time.Sleep(5 * time.Millisecond)
	}
	return "no answer"
}

// peerSince is when host's session with the router came up, from GET /api/bgp.
func (l *bgpLab) peerSince(t *testing.T, host string) time.Time {
	t.Helper()
	var st adminapi.BGP
	if err := json.Unmarshal([]byte(l.ctl(host, "bgp", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 1 || st.Peers[0].State != "established" || st.Peers[0].Since == nil {
		t.Fatalf("%s: peers %+v", host, st.Peers)
	}
	return *st.Peers[0].Since
}
