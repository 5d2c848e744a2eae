package runtime

// End-to-end tests of the active health checks against real peers run as child processes: a
// Redis server (tcp send/expect), dnsmasq (a udp DNS query), shell commands (exec) and a veth
// peer inside a network namespace this test creates (icmp). Each test checks the verdict both
// ways (the peer dies: DOWN; it returns: UP) and the state-change lines waage logs, with their
// reasons. Traffic goes only to loopback or into the test's own network namespace.
//
// The peers come from Debian packages (redis-server, dnsmasq-base, iproute2) that
// scripts/test-deps.sh installs. Without them a test is skipped when not running as root, and
// fails as root, where CI runs and the script can install them.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The check timing of every test here: a dead peer is DOWN after about 2 × 200ms, a returning
// one UP after about the same.
const peerCheckTiming = "interval: 200ms\n      timeout: 150ms\n      rise: 2\n      fall: 2\n"

// peerDeadline bounds every wait for a verdict: ten times what it should take, for slow,
// loaded (-race, parallel tests) machines.
const peerDeadline = 5 * time.Second

// peerTool finds an installed program for the tests that run real peers (in PATH or an sbin
// directory). A missing one skips the test when not root; as root, where scripts/test-deps.sh
// can install it, it fails the test.
func peerTool(t *testing.T, name, pkg string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s is not installed (Debian package %s) and the test does not run as root: run scripts/test-deps.sh as root to install it", name, pkg)
	}
	t.Fatalf("%s is not installed (Debian package %s): run scripts/test-deps.sh, which installs it", name, pkg)
	return ""
}

// peerPort returns a loopback port that is free for both TCP and UDP (dnsmasq binds both).
func peerPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no loopback port free for both tcp and udp")
	return 0
}

// peerProc is a peer program run in the foreground as a child process, which the test can kill
// and start again (same command line, so same port). It is killed by PID at cleanup; its output
// is shown when the test failed.
type peerProc struct {
	t    *testing.T
	argv []string
	out  logBuffer
	mu   sync.Mutex
	cmd  *exec.Cmd
	runs int
}

func newPeerProc(t *testing.T, argv ...string) *peerProc {
	t.Helper()
	p := &peerProc{t: t, argv: argv}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(argv[0]), p.out.String())
		}
	})
	return p
}

func (p *peerProc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.t.Fatalf("%s is already running", p.argv[0])
	}
	p.runs++
	fmt.Fprintf(&p.out, "--- run %d: %q\n", p.runs, p.argv)
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.argv[0], err)
	}
	p.cmd = cmd
}

// kill kills the process (SIGKILL to its PID) and reaps it; a no-op when it is not running.
func (p *peerProc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// waitReady polls ready (the test's own request to the peer) until it holds.
func (p *peerProc) waitReady(what string, ready func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not become ready within 10s; output:\n%s", what, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// peerConfig is a frontend "web" on 127.0.0.1:0 in front of the first backend, and the given
// backend blocks ("  - name: ...").
func peerConfig(backends ...string) string {
	name := strings.Fields(strings.TrimSpace(backends[0]))[2] // "- name: X"
	return "frontends:\n  - name: web\n    listen: [\"127.0.0.1:0\"]\n    default_backend: " + name +
		"\nbackends:\n" + strings.Join(backends, "")
}

// peerBackend is one backend block whose servers (name, address pairs) share the given health
// check fields (each "key: value", indented under health_check) plus peerCheckTiming.
func peerBackend(name string, check []string, servers ...string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "  - name: %s\n    outlier_detection: {consecutive_failures: 0}\n    health_check:\n", name)
	for _, f := range check {
		sb.WriteString("      " + f + "\n")
	}
	sb.WriteString("      " + peerCheckTiming)
	sb.WriteString("    servers:\n")
	for i := 0; i+1 < len(servers); i += 2 {
		fmt.Fprintf(&sb, "      - {name: %s, address: %q}\n", servers[i], servers[i+1])
	}
	return sb.String()
}

// logMsgs returns the msg of every line of waage's (slog text) log, unquoted.
func logMsgs(text string) []string {
	var out []string
	for line := range strings.Lines(text) {
		_, rest, ok := strings.Cut(line, " msg=")
		if !ok {
			continue
		}
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				continue
			}
			m, _ := strconv.Unquote(q)
			out = append(out, m)
		} else {
			m, _, _ := strings.Cut(strings.TrimRight(rest, "\n"), " ")
			out = append(out, m)
		}
	}
	return out
}

// waitLog waits until waage has logged a message matching re (the state-change line follows the
// verdict by a moment) and returns the messages that match.
func waitLog(t *testing.T, lb *logBuffer, re *regexp.Regexp, min int) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(2 * time.Second)
	for {
		got = got[:0]
		for _, m := range logMsgs(lb.String()) {
			if re.MatchString(m) {
				got = append(got, m)
			}
		}
		if len(got) >= min {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d log lines matching %s, got %d; log:\n%s", min, re, len(got), lb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// redisPing is the test's own readiness check of a Redis server: PING answered by +PONG.
func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	return bytes.HasPrefix(buf[:n], []byte("+PONG"))
}

// TestE2EHealthPeerRedis checks a tcp send/expect check against a real Redis: PING must be
// answered by +PONG. Killing Redis takes the server DOWN (connection refused), starting it again
// on the same port brings it UP. A second backend expecting a reply Redis never gives
// (~^\+HELLO) is DOWN with the reply quoted in the reason.
func TestE2EHealthPeerRedis(t *testing.T) {
	t.Parallel()
	bin := peerTool(t, "redis-server", "redis-server")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort(t)))
	_, port, _ := net.SplitHostPort(addr)
	redis := newPeerProc(t, bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--daemonize", "no", "--loglevel", "warning")
	redis.start()
	redis.waitReady("redis-server", func() bool { return redisPing(addr) })

	rt, lb := startWaageLog(t, peerConfig(
		peerBackend("redis", []string{"type: tcp", `send: "PING\r\n"`, `expect: "+PONG"`, "initial: down"}, "r1", addr),
		peerBackend("wrong", []string{"type: tcp", `send: "PING\r\n"`, `expect: "~^\\+HELLO"`}, "r1", addr),
	))
	r1, wrong := rt.Server("redis", "r1"), rt.Server("wrong", "r1")

	took := waitFor(t, peerDeadline, "redis/r1 UP (initial down)", r1.Healthy)
	t.Logf("redis/r1 UP %s after start", took)
	up := regexp.MustCompile(`^server redis/r1 UP: tcp check passed, 2/2 succeeded$`)
	waitLog(t, lb, up, 1)

	waitFor(t, peerDeadline, "wrong/r1 DOWN on a mismatching reply", func() bool { return !wrong.Healthy() })
	waitLog(t, lb, regexp.MustCompile(`^`+regexp.QuoteMeta(`server wrong/r1 DOWN: tcp check: reply "+PONG\r\n" does not match ~^\+HELLO, 2/2 failed`)+`$`), 1)

	redis.kill()
	took = waitFor(t, peerDeadline, "redis/r1 DOWN after redis was killed", func() bool { return !r1.Healthy() })
	t.Logf("redis/r1 DOWN %s after the kill", took)
	waitLog(t, lb, regexp.MustCompile(`^server redis/r1 DOWN: tcp check: connect: connection refused, 2/2 failed$`), 1)

	redis.start()
	redis.waitReady("redis-server (restarted)", func() bool { return redisPing(addr) })
	took = waitFor(t, peerDeadline, "redis/r1 UP after redis came back", r1.Healthy)
	t.Logf("redis/r1 UP %s after redis answered again", took)
	waitLog(t, lb, up, 2)
	if wrong.Healthy() {
		t.Error("wrong/r1 is UP although Redis never answers +HELLO")
	}
	if n := len(waitLog(t, lb, regexp.MustCompile(`^server wrong/r1 UP`), 0)); n != 0 {
		t.Errorf("wrong/r1 was logged UP %d times", n)
	}
}

// dnsQuery builds a DNS query (id, recursion desired, one question of type A, class IN) for name.
func dnsQuery(id uint16, name string) []byte {
	q := binary.BigEndian.AppendUint16(nil, id)
	q = binary.BigEndian.AppendUint16(q, 0x0100) // flags: RD
	q = binary.BigEndian.AppendUint16(q, 1)      // QDCOUNT
	q = append(q, 0, 0, 0, 0, 0, 0)              // ANCOUNT, NSCOUNT, ARCOUNT
	for label := range strings.SplitSeq(name, ".") {
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	q = append(q, 0)
	q = binary.BigEndian.AppendUint16(q, 1) // QTYPE A
	q = binary.BigEndian.AppendUint16(q, 1) // QCLASS IN
	return q
}

// dnsAsk is the test's own readiness check of dnsmasq: the query is answered with want in it.
func dnsAsk(addr string, query, want []byte) bool {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Write(query); err != nil {
		return false
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	return err == nil && bytes.Contains(buf[:n], want)
}

// TestE2EHealthPeerDNS checks a udp check against a real DNS server: dnsmasq answers health.test
// with 127.0.0.7, and the check (a hand-built query in send_hex) expects those four address bytes,
// written as YAML escapes. Killing dnsmasq takes the server DOWN (port unreachable), starting it
// again brings it UP. A second backend expecting another address is DOWN: expect is really
// applied to the binary reply.
func TestE2EHealthPeerDNS(t *testing.T) {
	t.Parallel()
	bin := peerTool(t, "dnsmasq", "dnsmasq-base")
	port := peerPort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dns := newPeerProc(t, bin, "-k", "--port="+strconv.Itoa(port), "--listen-address=127.0.0.1", "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=", "--user=root", "--log-facility=-",
		"--address=/health.test/127.0.0.7")
	query := dnsQuery(0x4843, "health.test") // id "HC"
	answer := []byte{127, 0, 0, 7}
	dns.start()
	dns.waitReady("dnsmasq", func() bool { return dnsAsk(addr, query, answer) })

	qhex := hex.EncodeToString(query)
	rt, lb := startWaageLog(t, peerConfig(
		peerBackend("dns", []string{"type: udp", "send_hex: " + qhex, `expect: "\x7f\x00\x00\x07"`, "initial: down"}, "ns1", addr),
		peerBackend("other", []string{"type: udp", "send_hex: " + qhex, `expect: "\x7f\x00\x00\x08"`}, "ns1", addr),
	))
	ns1, other := rt.Server("dns", "ns1"), rt.Server("other", "ns1")

	took := waitFor(t, peerDeadline, "dns/ns1 UP (initial down)", ns1.Healthy)
	t.Logf("dns/ns1 UP %s after start", took)
	up := regexp.MustCompile(`^server dns/ns1 UP: udp check passed, 2/2 succeeded$`)
	waitLog(t, lb, up, 1)

	waitFor(t, peerDeadline, "other/ns1 DOWN on another address", func() bool { return !other.Healthy() })
	// The reply starts with the query's id ("HC") and is quoted Go-style; the expectation too.
	waitLog(t, lb, regexp.MustCompile(`^server other/ns1 DOWN: udp check: reply "HC.*" does not contain `+
		regexp.QuoteMeta(strconv.Quote("\x7f\x00\x00\x08"))+`, 2/2 failed$`), 1)

	dns.kill()
	took = waitFor(t, peerDeadline, "dns/ns1 DOWN after dnsmasq was killed", func() bool { return !ns1.Healthy() })
	t.Logf("dns/ns1 DOWN %s after the kill", took)
	down := waitLog(t, lb, regexp.MustCompile(`^server dns/ns1 DOWN: udp check: (no listener \(port unreachable\)|no reply before timeout), 2/2 failed$`), 1)
	t.Logf("logged: %s", down[0])

	dns.start()
	dns.waitReady("dnsmasq (restarted)", func() bool { return dnsAsk(addr, query, answer) })
	took = waitFor(t, peerDeadline, "dns/ns1 UP after dnsmasq came back", ns1.Healthy)
	t.Logf("dns/ns1 UP %s after dnsmasq answered again", took)
	waitLog(t, lb, up, 2)
	if other.Healthy() {
		t.Error("other/ns1 is UP although dnsmasq never answers 127.0.0.8")
	}
}

// procsWith counts the running processes whose command line (arguments joined by spaces)
// contains marker.
func procsWith(marker string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.Contains(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})), marker) {
			n++
		}
	}
	return n
}

// TestE2EHealthPeerExec checks exec checks with real commands. A shell test of a file per server
// decides s1's verdict: the file exists, UP; removed, DOWN with "exit status 1"; back, UP. The
// command sees the server in its environment. A command that outlives the timeout is DOWN with
// "killed after timeout", and is killed with its children: no sleep piles up.
func TestE2EHealthPeerExec(t *testing.T) {
	t.Parallel()
	sh := peerTool(t, "sh", "dash")
	dir := t.TempDir()
	upFile := filepath.Join(dir, "up-s1")
	if err := os.WriteFile(upFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `test -e "$0/up-$WAAGE_SERVER_NAME" || exit 1; ` +
		`printf '%s|%s|%s|%s|%s\n' "$WAAGE_BACKEND" "$WAAGE_SERVER_NAME" "$WAAGE_SERVER_ADDRESS" "$WAAGE_SERVER_HOST" "$WAAGE_SERVER_PORT" >"$0/env-$WAAGE_SERVER_NAME.tmp" && ` +
		`mv "$0/env-$WAAGE_SERVER_NAME.tmp" "$0/env-$WAAGE_SERVER_NAME"`
	cmd := fmt.Sprintf("command: [%q, \"-c\", %q, %q]", sh, script, dir)
	// The slow command runs sleep in a child of the shell (not exec'd: a command follows), with
	// an argument unique to this test process, so its processes can be counted.
	marker := fmt.Sprintf("sleep 9.%d", os.Getpid())
	slow := fmt.Sprintf("command: [%q, \"-c\", %q]", sh, marker+"; exit 0")

	rt, lb := startWaageLog(t, peerConfig(
		peerBackend("exec", []string{"type: exec", cmd, "initial: down"}, "s1", "127.0.0.1:9"),
		peerBackend("slow", []string{"type: exec", slow}, "s1", "127.0.0.1:9"),
	))
	s1, slowS1 := rt.Server("exec", "s1"), rt.Server("slow", "s1")

	took := waitFor(t, peerDeadline, "exec/s1 UP (initial down, file present)", s1.Healthy)
	t.Logf("exec/s1 UP %s after start", took)
	up := regexp.MustCompile(`^server exec/s1 UP: exec check passed, 2/2 succeeded$`)
	waitLog(t, lb, up, 1)
	env, err := os.ReadFile(filepath.Join(dir, "env-s1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(env)), "exec|s1|127.0.0.1:9|127.0.0.1|9"; got != want {
		t.Errorf("the command's environment: WAAGE_BACKEND|NAME|ADDRESS|HOST|PORT = %q, want %q", got, want)
	}

	if err := os.Remove(upFile); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, peerDeadline, "exec/s1 DOWN after its file was removed", func() bool { return !s1.Healthy() })
	t.Logf("exec/s1 DOWN %s after the file was removed", took)
	waitLog(t, lb, regexp.MustCompile(`^server exec/s1 DOWN: exec check: exit status 1, 2/2 failed$`), 1)

	if err := os.WriteFile(upFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, peerDeadline, "exec/s1 UP after its file came back", s1.Healthy)
	t.Logf("exec/s1 UP %s after the file came back", took)
	waitLog(t, lb, up, 2)

	waitFor(t, peerDeadline, "slow/s1 DOWN", func() bool { return !slowS1.Healthy() })
	down := waitLog(t, lb, regexp.MustCompile(`^server slow/s1 DOWN: exec check: killed after timeout [0-9.]+[µm]?s, 2/2 failed$`), 1)
	t.Logf("logged: %s", down[0])
	// Several checks have been killed by now (each sleep would run 9s); at most the current
	// check's shell and sleep may be alive.
	checks := slowS1.Checks.Load()
	waitFor(t, peerDeadline, "3 more checks of slow/s1", func() bool { return slowS1.Checks.Load() >= checks+3 })
	if n := procsWith(marker); n > 2 {
		t.Errorf("%d processes of the slow command are alive after %d checks; the killed checks left them behind", n, slowS1.Checks.Load())
	}
	if slowS1.Healthy() {
		t.Error("slow/s1 came UP")
	}
}

// peerNetnsSeq numbers the network namespaces of this test process.
var peerNetnsSeq atomic.Int32

// peerNetns is a network namespace with a veth pair: host end in the root namespace, peer end
// inside, on a /30 of 10.253.0.0/16.
type peerNetns struct {
	ns, host, peer string
	hostIP, peerIP string
}

// runIP runs ip with args and returns its combined output.
func runIP(ipBin string, args ...string) (string, error) {
	out, err := exec.Command(ipBin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// subnetInUse reports whether an address of the root namespace lies in 10.253.n.0/24.
func subnetInUse(n int) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	prefix := fmt.Sprintf("10.253.%d.", n)
	for _, a := range addrs {
		if strings.HasPrefix(a.String(), prefix) {
			return true
		}
	}
	return false
}

// newPeerNetns creates the namespace and the veth pair, both links (and the namespace's lo) up,
// and removes them at cleanup, also when the test fails.
func newPeerNetns(t *testing.T, ipBin string) *peerNetns {
	t.Helper()
	pid := os.Getpid()
	seq := int(peerNetnsSeq.Add(1))
	n := -1
	for i := range 250 {
		if c := (pid+seq+i)%250 + 1; !subnetInUse(c) {
			n = c
			break
		}
	}
	if n < 0 {
		t.Fatal("every 10.253.N.0/24 (N 1-250) is in use")
	}
	id := fmt.Sprintf("%d%d", pid%100000, seq)
	p := &peerNetns{
		ns:     fmt.Sprintf("waage-hc-%d-%d", pid, seq),
		host:   "whc" + id + "h", // at most 3+5+2+1 characters: within IFNAMSIZ-1 (15)
		peer:   "whc" + id + "p",
		hostIP: fmt.Sprintf("10.253.%d.1", n),
		peerIP: fmt.Sprintf("10.253.%d.2", n),
	}
	if _, err := runIP(ipBin, "netns", "add", p.ns); err != nil {
		if strings.Contains(err.Error(), "Operation not permitted") {
			t.Skipf("cannot create a network namespace here (no CAP_SYS_ADMIN?): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Deleting the host end removes the pair at once; deleting the namespace would remove it
		// too, but asynchronously.
		if _, err := runIP(ipBin, "link", "show", "dev", p.host); err == nil {
			if _, err := runIP(ipBin, "link", "del", "dev", p.host); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if _, err := runIP(ipBin, "netns", "del", p.ns); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for _, args := range [][]string{
		{"link", "add", p.host, "type", "veth", "peer", "name", p.peer, "netns", p.ns},
		{"addr", "add", p.hostIP + "/30", "dev", p.host},
		{"link", "set", p.host, "up"},
		{"-n", p.ns, "addr", "add", p.peerIP + "/30", "dev", p.peer},
		{"-n", p.ns, "link", "set", p.peer, "up"},
		{"-n", p.ns, "link", "set", "lo", "up"},
	} {
		if _, err := runIP(ipBin, args...); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestE2EHealthPeerICMP checks an icmp check against the peer end of a veth pair inside a
// network namespace: UP from initial down (so a reply really arrived); the peer's link down:
// DOWN; up again: UP. It needs root (namespaces, links).
func TestE2EHealthPeerICMP(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and a veth pair (CI runs the tests as root)")
	}
	ipBin := peerTool(t, "ip", "iproute2")
	p := newPeerNetns(t, ipBin)

	rt, lb := startWaageLog(t, peerConfig(
		peerBackend("icmp", []string{"type: icmp", "initial: down"}, "peer", p.peerIP+":80"),
	))
	srv := rt.Server("icmp", "peer")

	took := waitFor(t, peerDeadline, "icmp/peer UP (initial down)", srv.Healthy)
	t.Logf("icmp/peer UP %s after start", took)
	up := regexp.MustCompile(`^server icmp/peer UP: icmp check passed, 2/2 succeeded$`)
	waitLog(t, lb, up, 1)

	if _, err := runIP(ipBin, "netns", "exec", p.ns, ipBin, "link", "set", p.peer, "down"); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, peerDeadline, "icmp/peer DOWN after its link went down", func() bool { return !srv.Healthy() })
	t.Logf("icmp/peer DOWN %s after the link went down", took)
	down := waitLog(t, lb, regexp.MustCompile(`^server icmp/peer DOWN: icmp check: .+, 2/2 failed$`), 1)
	t.Logf("logged: %s", down[0])

	if _, err := runIP(ipBin, "netns", "exec", p.ns, ipBin, "link", "set", p.peer, "up"); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, peerDeadline, "icmp/peer UP after its link came back", srv.Healthy)
	t.Logf("icmp/peer UP %s after the link came back", took)
	waitLog(t, lb, up, 2)
}
