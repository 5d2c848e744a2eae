//go:build linux

package main

// A cluster of three behind a real router: BIRD 2 in one network namespace peers with three waage
// nodes in three others, which announce one virtual IP (ECMP); the nodes take their frontends and
// backends from a three-member etcd in a fifth namespace, and proxy with maglev to servers in a
// sixth; a client in a seventh connects to the virtual IP. Every process runs in its namespace
// through `ip netns exec`. Needs root, ip (iproute2), bird (Debian bird2), etcd and nft.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The helper processes of the test binary for this test: WAAGE_AA_HELPER picks one.
func init() {
	if mode := os.Getenv("WAAGE_AA_HELPER"); mode != "" {
		os.Exit(aaHelper(mode))
	}
}

// aaHelper runs one helper:
//   - servers: for each NAME=ADDR of WAAGE_AA_SERVERS, a TCP server that greets each connection
//     with "NAME PEER-IP" and a newline and then echoes, and a UDP server that answers each
//     datagram with the same line. PEER-IP is the node that proxied.
//   - tcp: for each port of WAAGE_AA_PORTS (0: any), one connection from that client port to
//     WAAGE_AA_ADDR; prints "PORT NAME PEER-IP" or "PORT error ...". Each connection ends with a
//     reset (linger 0), so the port is free again at once, with no TIME_WAIT.
//   - load: new connections to WAAGE_AA_ADDR for WAAGE_AA_FOR over 4 workers, each reading the
//     greeting and one echoed line; prints "served PEER-IP N" per node, "failed N" and the first
//     errors.
//   - udp: from client port WAAGE_AA_PORT, a datagram to WAAGE_AA_ADDR every 5ms for WAAGE_AA_FOR;
//     prints "MS NAME PEER-IP" for each answer, MS since the start, and "sent N" at the end.
func aaHelper(mode string) int {
	addr := os.Getenv("WAAGE_AA_ADDR")
	switch mode {
	case "servers":
		for _, kv := range strings.Split(os.Getenv("WAAGE_AA_SERVERS"), ",") {
			name, a, _ := strings.Cut(kv, "=")
			ln, err := net.Listen("tcp", a)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			pc, err := net.ListenPacket("udp", a)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr().(*net.TCPAddr).IP)
						r := bufio.NewReader(c)
						for {
							line, err := r.ReadString('\n')
							if err != nil {
								return
							}
							c.Write([]byte(line))
						}
					}()
				}
			}()
			go func() {
				buf := make([]byte, 1500)
				for {
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					pc.WriteTo(fmt.Appendf(nil, "%s %s\n", name, from.(*net.UDPAddr).IP), from)
				}
			}()
		}
		fmt.Println("ready")
		select {}
	case "tcp":
		for _, p := range strings.Split(os.Getenv("WAAGE_AA_PORTS"), ",") {
			port, _ := strconv.Atoi(p)
			line, err := aaGreeting(addr, port)
			if err != nil {
				fmt.Println(p, "error", err)
				continue
			}
			fmt.Println(p, line)
		}
		return 0
	case "load":
		d, _ := time.ParseDuration(os.Getenv("WAAGE_AA_FOR"))
		end := time.Now().Add(d)
		var mu sync.Mutex
		served := map[string]int{}
		var failed int
		var errs []string
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					peer, err := aaOneConn(addr)
					mu.Lock()
					if err != nil {
						failed++
						if len(errs) < 5 {
							errs = append(errs, fmt.Sprintf("%s %v", time.Now().Format("15:04:05.000"), err))
						}
					} else {
						served[peer]++
					}
					mu.Unlock()
					time.Sleep(2 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		for peer, n := range served {
			fmt.Println("served", peer, n)
		}
		fmt.Println("failed", failed)
		for _, e := range errs {
			fmt.Println("error", e)
		}
		return 0
	case "udp":
		port, _ := strconv.Atoi(os.Getenv("WAAGE_AA_PORT"))
		d, _ := time.ParseDuration(os.Getenv("WAAGE_AA_FOR"))
		raddr, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		start := time.Now()
		go func() {
			buf := make([]byte, 1500)
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				fmt.Printf("%d %s", time.Since(start).Milliseconds(), buf[:n])
			}
		}()
		sent := 0
		for time.Since(start) < d {
			c.WriteTo([]byte("ping"), raddr)
			sent++
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // the last answers
		fmt.Println("sent", sent)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper", mode)
	return 2
}

// aaGreeting connects from the client port (0: any), reads the server's greeting and resets the
// connection.
func aaGreeting(addr string, port int) (string, error) {
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{Port: port}, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.(*net.TCPConn).SetLinger(0)
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// aaOneConn is one short connection: the greeting, one line echoed, a normal close. It returns the
// node that proxied it.
func aaOneConn(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	greet, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("greeting: %w", err)
	}
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return "", err
	}
	if echo, err := r.ReadString('\n'); err != nil || echo != "hello\n" {
		return "", fmt.Errorf("echo %q: %v", echo, err)
	}
	f := strings.Fields(greet)
	return f[len(f)-1], nil
}

const (
	aaVIP     = "10.250.100.1"
	aaPrefix  = "/waage/aa/"
	aaTCPAddr = aaVIP + ":8080"
	aaUDPAddr = aaVIP + ":8081"
)

var (
	aaNodes = []string{"lb1", "lb2", "lb3"}
	// The etcd members, on the control namespace's link to the router.
	aaEtcd = []string{"10.250.8.11", "10.250.8.12", "10.250.8.13"}
)

// aaLab is the namespaces of the cluster and the processes in them.
type aaLab struct {
	*bgpLab
	etcdDir string
}

// aaNodeIP is node lbN's address on its link to the router, which the servers see it connect
// from and the router has as its next hop.
func aaNodeIP(node string) string { return "10.250." + strings.TrimPrefix(node, "lb") + ".2" }

// aaNodeByIP is the node whose address ip is.
func aaNodeByIP(ip string) string {
	for _, n := range aaNodes {
		if aaNodeIP(n) == ip {
			return n
		}
	}
	return "?" + ip
}

// aaEndpoints are the etcd members' client addresses, as --etcd takes them.
func aaEndpoints() string {
	eps := make([]string, len(aaEtcd))
	for i, a := range aaEtcd {
		eps[i] = a + ":2379"
	}
	return strings.Join(eps, ",")
}

// aaNodeConfig is node lbN's own file: etcd, admin, log and BGP. Its frontends come from etcd.
func aaNodeConfig(node, stateDir string) string {
	ip := aaNodeIP(node)
	return fmt.Sprintf(`etcd:
  endpoints: [%s]
  prefix: %s
  node_name: %s
  state_dir: %s
admin: {listen: "%s:9900", token: secret}
log: {level: info, access: "off"}
bgp:
  local_as: 65001
  router_id: %s
  peers: [{address: %s, as: 65000, hold_time: 3s, keepalive: 1s}]
  announce: ["%s/32"]
`, aaEndpoints(), aaPrefix, node, stateDir, ip, ip, strings.TrimSuffix(ip, ".2")+".1", aaVIP)
}

// aaClusterConfig is the cluster's configuration: a tcp and a udp frontend on the virtual IP,
// maglev over three servers. extra is appended to the tcp frontend's listen list.
func aaClusterConfig(s3weight int, extra string) string {
	listen := `"` + aaTCPAddr + `"`
	if extra != "" {
		listen += `, "` + extra + `"`
	}
	servers := fmt.Sprintf(`[{name: s1, address: "10.250.50.21:7000"}, {name: s2, address: "10.250.50.22:7000"}, {name: s3, address: "10.250.50.23:7000", weight: %d}]`, s3weight)
	return fmt.Sprintf(`shutdown_timeout: 3s
frontends:
  - {name: tcp, mode: tcp, listen: [%s], backend: app}
  - {name: udp, mode: udp, listen: ["%s"], backend: app-udp}
backends:
  - name: app
    algorithm: maglev
    servers: %s
  - name: app-udp
    algorithm: maglev
    servers: %s
`, listen, aaUDPAddr, servers, servers)
}

// aaBirdConf is examples/active-active/router-bird.conf with the lab's addresses: node lbN at
// 10.250.N.2 instead of 10.0.0.N, the virtual IP 10.250.100.1 instead of 192.0.2.10.
func aaBirdConf(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(repoRoot, "examples", "active-active", "router-bird.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := regexp.MustCompile(`neighbor 10\.0\.0\.(\d+) `).ReplaceAllString(string(b), "neighbor 10.250.$1.2 ")
	conf = strings.ReplaceAll(conf, "192.0.2.10/32", aaVIP+"/32")
	for _, n := range aaNodes {
		if !strings.Contains(conf, "neighbor "+aaNodeIP(n)+" as 65001;") {
			t.Fatalf("router-bird.conf has no session with %s:\n%s", n, conf)
		}
	}
	return conf
}

// start is bgpLab's start with the process bound to the test's life: should the test process
// die before its cleanup runs, the kernel kills what it started.
func (l *aaLab) start(host, name string, stdin *os.File, env []string, args ...string) *exec.Cmd {
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.procs[name] = cmd
	return cmd
}

// link connects host to the router: the router is .1 of net (a /24), host has addrs.
func (l *aaLab) link(host, net string, addrs ...string) {
	l.ip("link", "add", "r-"+host, "netns", l.ns("r"), "type", "veth", "peer", "name", "eth0", "netns", l.ns(host))
	l.ip("-n", l.ns("r"), "addr", "add", net+".1/24", "dev", "r-"+host)
	l.ip("-n", l.ns("r"), "link", "set", "r-"+host, "up")
	for _, a := range addrs {
		l.ip("-n", l.ns(host), "addr", "add", a+"/24", "dev", "eth0")
	}
	l.ip("-n", l.ns(host), "link", "set", "eth0", "up")
	l.ip("-n", l.ns(host), "route", "add", "default", "via", net+".1")
}

// newAALab builds the namespaces and starts BIRD, etcd and the servers; the nodes come later.
func newAALab(t *testing.T) *aaLab {
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "bird", "birdc", "etcd", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s not found (scripts/test-deps.sh installs it)", tool)
		}
	}
	hosts := []string{"r", "ctl", "b", "c", "lb1", "lb2", "lb3"}
	l := &aaLab{bgpLab: &bgpLab{t: t, prefix: fmt.Sprintf("waa%d", os.Getpid()%100000), dir: t.TempDir(), procs: map[string]*exec.Cmd{}}}
	l.bin = buildWaage(t)
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm" // memory: no disk syncs to wait for
	}
	dir, err := os.MkdirTemp(base, "waage-aa-etcd-")
	if err != nil {
		t.Fatal(err)
	}
	l.etcdDir = dir
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(l.dir, "*.log"))
			for _, f := range logs {
				name := strings.TrimSuffix(filepath.Base(f), ".log")
				t.Logf("%s:\n%s", name, l.log(name))
			}
		}
		for name, cmd := range l.procs {
			syscall.Kill(cmd.Process.Pid, syscall.SIGCONT) // a node the test froze
			l.kill(name, syscall.SIGKILL)
		}
		for _, h := range hosts {
			// Anything left in a namespace is ours: by PID, then the namespace by name.
			out, _ := exec.Command("ip", "netns", "pids", l.ns(h)).Output()
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			exec.Command("ip", "netns", "del", l.ns(h)).Run()
		}
		os.RemoveAll(l.etcdDir)
	})
	for _, h := range hosts {
		l.ip("netns", "add", l.ns(h))
		l.ip("-n", l.ns(h), "link", "set", "lo", "up")
	}
	for _, n := range aaNodes {
		ip := aaNodeIP(n)
		l.link(n, strings.TrimSuffix(ip, ".2"), ip)
		l.ip("-n", l.ns(n), "addr", "add", aaVIP+"/32", "dev", "lo")
	}
	l.link("ctl", "10.250.8", aaEtcd...)
	l.link("b", "10.250.50", "10.250.50.21", "10.250.50.22", "10.250.50.23")
	l.link("c", "10.250.9", "10.250.9.2")
	for _, k := range []string{"net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"} {
		if out, err := exec.Command("ip", "netns", "exec", l.ns("r"), "sysctl", "-qw", k).CombinedOutput(); err != nil {
			t.Fatalf("sysctl %s: %v\n%s", k, err, out)
		}
	}
	conf := filepath.Join(l.dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(aaBirdConf(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	l.start("r", "bird", nil, nil, "bird", "-f", "-c", conf, "-s", filepath.Join(l.dir, "bird.ctl"), "-P", filepath.Join(l.dir, "bird.pid"))
	var initial []string
	for i, a := range aaEtcd {
		initial = append(initial, fmt.Sprintf("m%d=http://%s:2380", i, a))
	}
	for i, a := range aaEtcd {
		name := fmt.Sprintf("m%d", i)
		l.start("ctl", "etcd-"+name, nil, nil, "etcd", "--name", name, "--data-dir", filepath.Join(l.etcdDir, name),
			"--listen-client-urls", "http://"+a+":2379", "--advertise-client-urls", "http://"+a+":2379",
			"--listen-peer-urls", "http://"+a+":2380", "--initial-advertise-peer-urls", "http://"+a+":2380",
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(l.etcdDir),
			"--heartbeat-interval", "25", "--election-timeout", "250", "--unsafe-no-fsync",
			"--logger", "zap", "--log-level", "error")
	}
	l.start("b", "servers", nil, []string{"WAAGE_AA_HELPER=servers",
		"WAAGE_AA_SERVERS=s1=10.250.50.21:7000,s2=10.250.50.22:7000,s3=10.250.50.23:7000"}, os.Args[0], "-test.run=^$")
	return l
}

// startNode starts node's waage.
func (l *aaLab) startNode(node string) {
	l.t.Helper()
	path := filepath.Join(l.dir, node+".yaml")
	if err := os.WriteFile(path, []byte(aaNodeConfig(node, filepath.Join(l.dir, node+"-state"))), 0o644); err != nil {
		l.t.Fatal(err)
	}
	l.start(node, "waage-"+node, nil, nil, l.bin, "run", "-c", path, "-watch=false")
}

// stopNode sends sig to node's waage and returns a channel that gets how long it took to exit;
// after limit it kills it (a test error).
func (l *aaLab) stopNode(node string, sig syscall.Signal, limit time.Duration) <-chan time.Duration {
	done := make(chan time.Duration, 1)
	cmd := l.procs["waage-"+node]
	if cmd == nil {
		done <- 0
		return done
	}
	delete(l.procs, "waage-"+node)
	start := time.Now()
	cmd.Process.Signal(sig)
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	go func() {
		defer func() { done <- time.Since(start) }()
		select {
		case <-exited:
		case <-time.After(limit):
			l.t.Errorf("%s's waage still runs %s after %s", node, limit, sig)
			cmd.Process.Kill()
			<-exited
		}
	}()
	return done
}

// push runs `waage config push` with text as the file, from the control namespace.
func (l *aaLab) push(name, text string) (string, error) {
	path := filepath.Join(l.dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		l.t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", l.ns("ctl"), l.bin, "config", "push", "-c", path,
		"--etcd", aaEndpoints(), "--prefix", aaPrefix).CombinedOutput()
	return string(out), err
}

// ctlJSON runs `waage ctl ARGS -o json` against node's admin API, in node's namespace, into v.
func (l *aaLab) ctlJSON(node string, v any, args ...string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(node), l.bin, "ctl", "-a", aaNodeIP(node) + ":9900", "-token", "secret", "-o", "json"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("waage ctl %s on %s: %v %s", strings.Join(args, " "), node, err, out)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(out, v)
}

// revision is the cluster configuration revision node runs (0 if it does not answer).
func (l *aaLab) revision(node string) int64 {
	var st struct {
		ConfigRevision int64 `json:"config_revision"`
	}
	l.ctlJSON(node, &st, "cluster")
	return st.ConfigRevision
}

// server is one server of a backend as node's admin API shows it.
func (l *aaLab) server(node, backend, name string) (state string, weight int) {
	var ss struct {
		Servers []struct {
			Name   string `json:"name"`
			State  string `json:"state"`
			Weight int    `json:"weight"`
		} `json:"servers"`
	}
	l.ctlJSON(node, &ss, "servers", backend)
	for _, s := range ss.Servers {
		if s.Name == name {
			return s.State, s.Weight
		}
	}
	return "", 0
}

// onAll waits until cond holds on every node (polled in parallel) and returns the slowest one's
// time since start.
func (l *aaLab) onAll(what string, start time.Time, limit time.Duration, cond func(node string) bool) time.Duration {
	l.t.Helper()
	took := make([]time.Duration, len(aaNodes))
	var wg sync.WaitGroup
	for i, n := range aaNodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !cond(n) {
				if time.Since(start) > limit {
					took[i] = -1
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	var slowest time.Duration
	for i, d := range took {
		if d < 0 {
			l.t.Fatalf("%s: not on %s within %s", what, aaNodes[i], limit)
		}
		slowest = max(slowest, d)
	}
	return slowest
}

// clientRun runs a client helper in the client namespace and returns its output lines.
func (l *aaLab) clientRun(env ...string) []string {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns("c"), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("client %v: %v\n%s", env, err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// flow is a TCP connection's outcome: the server maglev chose and the node that proxied.
type flow struct{ server, node string }

// connectFrom opens one connection from each client port and returns what each reached.
func (l *aaLab) connectFrom(ports []int) map[int]flow {
	l.t.Helper()
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = strconv.Itoa(p)
	}
	got := map[int]flow{}
	for _, line := range l.clientRun("WAAGE_AA_HELPER=tcp", "WAAGE_AA_ADDR="+aaTCPAddr, "WAAGE_AA_PORTS="+strings.Join(ps, ",")) {
		f := strings.Fields(line)
		p, _ := strconv.Atoi(f[0])
		if len(f) != 3 || f[1] == "error" {
			l.t.Errorf("connection from port %d: %s", p, line)
			continue
		}
		got[p] = flow{server: f[1], node: aaNodeByIP(f[2])}
	}
	return got
}

// pinFlows makes the router keep each established connection on the node it started on, as
// pinFlows of the BGP test does for two.
func (l *aaLab) pinFlows() {
	l.t.Helper()
	var marks strings.Builder
	for i, n := range aaNodes {
		fmt.Fprintf(&marks, "    ct state new oifname \"r-%s\" ct mark set %d\n", n, i+1)
	}
	rules := `table ip pin {
  chain pre { type filter hook prerouting priority -150; policy accept; ct state established,related meta mark set ct mark; }
  chain post { type filter hook postrouting priority -150; policy accept;
` + marks.String() + `  }
}
`
	path := filepath.Join(l.dir, "pin.nft")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", l.ns("r"), "nft", "-f", path).CombinedOutput(); err != nil {
		l.t.Fatalf("nft: %v\n%s", err, out)
	}
	for i, n := range aaNodes {
		table := fmt.Sprint(101 + i)
		l.ip("-n", l.ns("r"), "rule", "add", "fwmark", fmt.Sprint(i+1), "table", table)
		l.ip("-n", l.ns("r"), "route", "add", aaVIP+"/32", "via", aaNodeIP(n), "table", table)
	}
}

// unpinFlows removes what pinFlows added.
func (l *aaLab) unpinFlows() {
	l.t.Helper()
	exec.Command("ip", "netns", "exec", l.ns("r"), "nft", "delete", "table", "ip", "pin").Run()
	for i := range aaNodes {
		l.ip("-n", l.ns("r"), "rule", "del", "fwmark", fmt.Sprint(i+1), "table", fmt.Sprint(101+i))
	}
}

// hopsOf are the router's next hops for these nodes.
func hopsOf(nodes ...string) []string {
	var hops []string
	for _, n := range nodes {
		hops = append(hops, aaNodeIP(n))
	}
	return hops
}

// TestActiveActiveCluster: three nodes announce one virtual IP to a router (ECMP) and take their
// configuration from etcd. New connections spread over all three, and maglev sends a client
// address and port to the same server whichever node serves it, also for a UDP flow that the
// router moves when its node stops; a clean stop under load fails no connection; a killed or
// frozen node loses its next hop; a push, a refused push and a drain reach every node. The
// times are logged to be quoted in docs/cluster.md.
func TestActiveActiveCluster(t *testing.T) {
	l := newAALab(t)
	vip := aaVIP + "/32"

	// The cluster's configuration first, so the nodes start with it.
	start := time.Now()
	var out string
	for {
		var err error
		if out, err = l.push("cluster.yaml", aaClusterConfig(1, "")); err == nil {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("push: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("etcd up and the cluster configuration pushed %s after etcd started: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	rev1, _ := strconv.ParseInt(regexp.MustCompile(`revision (\d+)`).FindStringSubmatch(out)[1], 10, 64)

	start = time.Now()
	for _, n := range aaNodes {
		l.startNode(n)
	}
	took := l.waitHops(vip, start, 15*time.Second, hopsOf(aaNodes...)...)
	t.Logf("three next hops for %s %s after the nodes started", vip, took.Round(time.Millisecond))
	l.onAll("the pushed configuration", start, 5*time.Second, func(n string) bool { return l.revision(n) == rev1 })

	// A node that starts without a local copy of the cluster configuration announces only once
	// it listens.
	if log := l.log("waage-" + aaNodes[2]); !strings.Contains(log, "no local copy") ||
		strings.Index(log, `msg="bgp announce"`) < strings.Index(log, `msg=listening`) {
		t.Errorf("%s announced before its listeners were up:\n%s", aaNodes[2], log)
	}

	// 1. New connections from 60 client ports spread over the three nodes.
	ports := make([]int, 60)
	for i := range ports {
		ports[i] = 61000 + i
	}
	first := l.connectFrom(ports)
	byNode, byServer := map[string]int{}, map[string]int{}
	for _, f := range first {
		byNode[f.node]++
		byServer[f.server]++
	}
	t.Logf("60 new connections: by node %v, by server %v", byNode, byServer)
	for _, n := range aaNodes {
		if byNode[n] == 0 {
			t.Errorf("no connection reached %s: %v", n, byNode)
		}
	}
	if len(byServer) != 3 {
		t.Errorf("maglev used servers %v, want all three", byServer)
	}

	// 2. A UDP flow; its node stops cleanly; the router moves it, and it keeps its server.
	l.start("c", "udp", nil, []string{"WAAGE_AA_HELPER=udp", "WAAGE_AA_ADDR=" + aaUDPAddr, "WAAGE_AA_PORT=62000", "WAAGE_AA_FOR=2500ms"}, os.Args[0], "-test.run=^$")
	var udpNode, udpServer string
	for deadline := time.Now().Add(3 * time.Second); udpNode == ""; {
		if f := strings.Fields(l.log("udp")); len(f) >= 3 {
			udpServer, udpNode = f[1], aaNodeByIP(f[2])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no UDP answer: %s", l.log("udp"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	rest := slices.DeleteFunc(slices.Clone(aaNodes), func(n string) bool { return n == udpNode })
	start = time.Now()
	stopped := l.stopNode(udpNode, syscall.SIGTERM, 8*time.Second)
	took = l.waitHops(vip, start, 5*time.Second, hopsOf(rest...)...)
	t.Logf("SIGTERM of %s (UDP flow's node): its next hop gone %s later", udpNode, took.Round(time.Millisecond))
	l.procs["udp"].Wait()
	delete(l.procs, "udp")
	var lastMs, gap int
	var moved string
	var udpAnswers, udpSent int
	for _, line := range strings.Split(strings.TrimSpace(l.log("udp")), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "sent" {
			udpSent, _ = strconv.Atoi(f[1])
		}
		if len(f) != 3 {
			continue
		}
		ms, _ := strconv.Atoi(f[0])
		udpAnswers++
		if f[1] != udpServer {
			t.Errorf("UDP flow: answer from %s, first from %s: %s", f[1], udpServer, line)
		}
		if n := aaNodeByIP(f[2]); n != udpNode && moved == "" {
			moved = n
		}
		if lastMs > 0 {
			gap = max(gap, ms-lastMs)
		}
		lastMs = ms
	}
	if moved == "" {
		t.Errorf("the UDP flow never moved from %s", udpNode)
	}
	t.Logf("UDP flow (client port 62000, a datagram every 5ms): %s via %s, then via %s after the SIGTERM; %d answers to %d datagrams, all from %s; longest gap between answers %dms",
		udpServer, udpNode, moved, udpAnswers, udpSent, udpServer, gap)
	if udpSent-udpAnswers > 5 {
		t.Errorf("UDP flow: %d of %d datagrams unanswered", udpSent-udpAnswers, udpSent)
	}

	// 1 again: the same 60 client ports, with a node gone, reach the same servers.
	second := l.connectFrom(ports)
	var movedConns, sameServer int
	for _, p := range ports {
		a, b := first[p], second[p]
		if a.node != b.node {
			movedConns++
		}
		if a.server == b.server {
			sameServer++
		} else {
			t.Errorf("client port %d: %s via %s, then %s via %s", p, a.server, a.node, b.server, b.node)
		}
	}
	t.Logf("the same 60 client ports after %s left: %d moved to another node, %d of 60 reached the same server", udpNode, movedConns, sameServer)
	if movedConns == 0 {
		t.Errorf("no connection moved to another node")
	}
	<-stopped
	if log := l.log("waage-" + udpNode); !strings.Contains(log, `msg="bgp withdraw"`) || !strings.Contains(log, `reason="shutting down"`) {
		t.Errorf("%s logged no withdrawal at shutdown:\n%s", udpNode, log)
	}

	// 3. A clean stop under load: no new connection fails. The router pins each connection to the
	// node it started on, so the ones open through the stopping node finish there.
	l.pinFlows()
	loadNode := rest[0]
	others := rest[1:]
	l.start("c", "load", nil, []string{"WAAGE_AA_HELPER=load", "WAAGE_AA_ADDR=" + aaTCPAddr, "WAAGE_AA_FOR=3s"}, os.Args[0], "-test.run=^$")
	time.Sleep(time.Second)
	start = time.Now()
	stopped = l.stopNode(loadNode, syscall.SIGTERM, 8*time.Second)
	took = l.waitHops(vip, start, 5*time.Second, hopsOf(others...)...)
	l.procs["load"].Wait()
	delete(l.procs, "load")
	exited := <-stopped
	load := strings.TrimSpace(l.log("load"))
	t.Logf("SIGTERM of %s under load: next hop gone %s later, exited after %s (%s); client: %s", loadNode, took.Round(time.Millisecond),
		exited.Round(time.Millisecond), regexp.MustCompile(`msg=stopped.*`).FindString(l.log("waage-"+loadNode)), strings.ReplaceAll(load, "\n", "; "))
	if !slices.Contains(strings.Split(load, "\n"), "failed 0") {
		t.Errorf("connections failed while %s stopped:\n%s", loadNode, load)
	}
	if !strings.Contains(load, "served "+aaNodeIP(loadNode)) {
		t.Errorf("no connection through %s during the load:\n%s", loadNode, load)
	}
	log := l.log("waage-" + loadNode)
	if w, c := strings.Index(log, `msg="bgp withdraw"`), strings.Index(log, `msg="listener closed"`); w < 0 || c >= 0 && c < w {
		t.Errorf("%s: the route was not withdrawn before its listeners closed:\n%s", loadNode, log)
	}
	l.unpinFlows()

	// Both back.
	start = time.Now()
	l.startNode(udpNode)
	l.startNode(loadNode)
	took = l.waitHops(vip, start, 15*time.Second, hopsOf(aaNodes...)...)
	t.Logf("%s and %s restarted: three next hops again %s later", udpNode, loadNode, took.Round(time.Millisecond))

	// 4. SIGKILL: the kernel closes the session, the next hop goes at once.
	killed, frozen, last := aaNodes[0], aaNodes[1], aaNodes[2]
	start = time.Now()
	<-l.stopNode(killed, syscall.SIGKILL, 2*time.Second)
	took = l.waitHops(vip, start, 3*time.Second, hopsOf(frozen, last)...)
	t.Logf("SIGKILL of %s: its next hop gone %s later", killed, took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("SIGKILL: next hop gone after %s, want within a second", took)
	}

	// SIGSTOP: nothing until the router's hold timer (3s) runs out.
	start = time.Now()
	syscall.Kill(l.procs["waage-"+frozen].Process.Pid, syscall.SIGSTOP)
	took = l.waitHops(vip, start, 6*time.Second, hopsOf(last)...)
	t.Logf("SIGSTOP of %s: its next hop gone %s later (hold time 3s)", frozen, took.Round(time.Millisecond))
	if took < 1500*time.Millisecond || took > 4*time.Second {
		t.Errorf("SIGSTOP: next hop gone after %s, want the hold time (3s)", took)
	}
	syscall.Kill(l.procs["waage-"+frozen].Process.Pid, syscall.SIGCONT)
	start = time.Now()
	l.startNode(killed)
	took = l.waitHops(vip, start, 15*time.Second, hopsOf(aaNodes...)...)
	t.Logf("%s resumed and %s restarted: three next hops again %s after the SIGCONT", frozen, killed, took.Round(time.Millisecond))
	l.onAll("all back in the cluster", time.Now(), 10*time.Second, func(n string) bool { return l.revision(n) == rev1 })

	// 5. A push reaches every node.
	start = time.Now()
	out, err := l.push("cluster-v2.yaml", aaClusterConfig(2, aaVIP+":8082"))
	pushTook := time.Since(start)
	if err != nil {
		t.Fatalf("push v2: %v\n%s", err, out)
	}
	rev2, _ := strconv.ParseInt(regexp.MustCompile(`revision (\d+)`).FindStringSubmatch(out)[1], 10, 64)
	took = l.onAll("push v2", start, 3*time.Second, func(n string) bool {
		if l.revision(n) != rev2 {
			return false
		}
		_, w := l.server(n, "app", "s3")
		return w == 2
	})
	t.Logf("push (s3 weight 1 -> 2, a second tcp port): revision %d on all three nodes %s after `waage config push` started (the push itself took %s)", rev2, took.Round(time.Millisecond), pushTook.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("the push took %s to reach all nodes, want within a second", took)
	}
	// The nodes' own account: from the push's timestamp to "cluster configuration applied".
	var applied []string
	re := regexp.MustCompile(`time=(\S+) level=INFO msg="cluster configuration applied" .*revision=` + strconv.FormatInt(rev2, 10) + ` pushed=(\S+)`)
	for _, n := range aaNodes {
		m := re.FindStringSubmatch(l.log("waage-" + n))
		if m == nil {
			t.Errorf("%s logged no application of revision %d", n, rev2)
			continue
		}
		at, err1 := time.Parse(time.RFC3339Nano, m[1])
		pushed, err2 := time.Parse(time.RFC3339Nano, m[2])
		if err1 != nil || err2 != nil {
			t.Errorf("%s: %v %v", n, err1, err2)
			continue
		}
		applied = append(applied, fmt.Sprintf("%s %s", n, at.Sub(pushed).Round(time.Millisecond)))
	}
	t.Logf("push: applied after the push (the nodes' logs): %s", strings.Join(applied, ", "))
	if got := l.connectFrom([]int{0}); len(got) != 1 {
		t.Errorf("no connection after the push: %v", got)
	}
	if lines := l.clientRun("WAAGE_AA_HELPER=tcp", "WAAGE_AA_ADDR="+aaVIP+":8082", "WAAGE_AA_PORTS=0"); len(lines) != 1 || strings.Contains(lines[0], "error") {
		t.Errorf("the pushed port 8082: %v", lines)
	}

	// A bad push is refused and changes nothing.
	out, err = l.push("bad.yaml", strings.Replace(aaClusterConfig(3, ""), "backend: app-udp", "backend: app-upd", 1))
	if err == nil || !strings.Contains(out, "not pushed") {
		t.Errorf("a bad push: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	for _, n := range aaNodes {
		if rev := l.revision(n); rev != rev2 {
			t.Errorf("%s runs revision %d after a refused push, want %d", n, rev, rev2)
		}
		if _, w := l.server(n, "app", "s3"); w != 2 {
			t.Errorf("%s: s3 weight %d after a refused push, want 2", n, w)
		}
	}
	t.Logf("a bad push was refused: %s", strings.TrimSpace(out))

	// A drain through one node's admin API applies on all.
	start = time.Now()
	if err := l.ctlJSON(aaNodes[0], nil, "drain", "app/s1"); err != nil {
		t.Fatal(err)
	}
	took = l.onAll("drain of s1", start, 3*time.Second, func(n string) bool {
		st, _ := l.server(n, "app", "s1")
		return st == "drain"
	})
	t.Logf("drain of app/s1 through %s's admin API: drain on all three nodes %s later", aaNodes[0], took.Round(time.Millisecond))
	drained := l.connectFrom(ports[:20])
	for p, f := range drained {
		if f.server == "s1" {
			t.Errorf("client port %d reached the drained s1 via %s", p, f.node)
		}
	}
}
