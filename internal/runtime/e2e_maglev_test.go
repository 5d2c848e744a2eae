package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// maglevNodeConfig is one frontend named after its mode on 127.0.0.1:0 with a maglev backend
// "b" over addrs, named s1, s2, ... in the order of addrs, but listed in the order given by
// order (indexes into addrs): two nodes may list the same servers differently.
func maglevNodeConfig(mode, extraBackend string, addrs []string, order []int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "frontends:\n  - name: %s\n    mode: %s\n    listen: [\"127.0.0.1:0\"]\n    backend: b\n", mode, mode)
	sb.WriteString("backends:\n  - name: b\n    algorithm: maglev\n")
	sb.WriteString(extraBackend)
	sb.WriteString("    servers:\n")
	for _, i := range order {
		fmt.Fprintf(&sb, "      - {name: s%d, address: %q}\n", i+1, addrs[i])
	}
	return sb.String()
}

// TestE2EMaglevTCPTwoNodes: two waage instances ("nodes" behind one ECMP route) with the same
// servers, listed in opposite orders, send a connection from the same client address and port
// to the same server, without talking to each other; connections from other ports spread.
func TestE2EMaglevTCPTwoNodes(t *testing.T) {
	t.Parallel()
	es := []*tcpEcho{startTCPEcho(t, "a"), startTCPEcho(t, "b"), startTCPEcho(t, "c")}
	addrs := []string{es[0].addr(), es[1].addr(), es[2].addr()}
	nodeA := startWaage(t, maglevNodeConfig("tcp", "", addrs, []int{0, 1, 2}))
	nodeB := startWaage(t, maglevNodeConfig("tcp", "", addrs, []int{2, 1, 0}))
	feA, feB := feAddr(t, nodeA, "tcp"), feAddr(t, nodeB, "tcp")

	// greeting connects from local to fe and returns the server's name, then resets the
	// connection, so that the client port has no TIME_WAIT and can connect again at once. It
	// returns false when the port was taken meanwhile (tests running in parallel connect from
	// ephemeral ports too).
	greeting := func(local *net.TCPAddr, fe string) (string, bool) {
		t.Helper()
		d := net.Dialer{LocalAddr: local, Timeout: ioTimeout}
		c, err := d.Dial("tcp", fe)
		if errors.Is(err, syscall.EADDRINUSE) {
			return "", false
		}
		if err != nil {
			t.Fatalf("dial %s from %s: %v", fe, local, err)
		}
		defer func() {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}()
		c.SetDeadline(time.Now().Add(ioTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("greeting via %s: %v", fe, err)
		}
		return strings.TrimSpace(line), true
	}

	servers := map[string]int{}
	used := 0
	for tries := 0; used < 20 && tries < 100; tries++ {
		local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: freeTCPPort(t)}
		a, okA := greeting(local, feA)
		b, okB := greeting(local, feB)
		again, okAgain := greeting(local, feA)
		if !okA || !okB || !okAgain {
			continue // another test took the port: try another one
		}
		if a != b {
			t.Fatalf("client %s: node A chose %s, node B %s", local, a, b)
		}
		if again != a {
			t.Fatalf("client %s: node A chose %s, then %s", local, a, again)
		}
		servers[a]++
		used++
	}
	if used < 20 {
		t.Fatalf("only %d of 20 client ports could be used", used)
	}
	if len(servers) < 2 {
		t.Errorf("20 client ports all went to %v", servers)
	}
}

// freeTCPPort returns a loopback port that nothing uses right now.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestE2EMaglevUDPTwoNodes: a UDP flow (one client socket) that moves from one node to the
// other, as when an ECMP router rehashes after a node joins or leaves, reaches the same server
// through both, with no state shared between the nodes.
func TestE2EMaglevUDPTwoNodes(t *testing.T) {
	t.Parallel()
	es := []*udpEcho{startUDPEcho(t, "a"), startUDPEcho(t, "b"), startUDPEcho(t, "c")}
	addrs := []string{es[0].addr(), es[1].addr(), es[2].addr()}
	const size = "    maglev_table_size: 10007\n"
	nodeA := startWaage(t, maglevNodeConfig("udp", size, addrs, []int{0, 1, 2}))
	nodeB := startWaage(t, maglevNodeConfig("udp", size, addrs, []int{1, 2, 0}))
	var fes []*net.UDPAddr
	for _, rt := range []*Runtime{nodeA, nodeB} {
		a, err := net.ResolveUDPAddr("udp", feAddr(t, rt, "udp"))
		if err != nil {
			t.Fatal(err)
		}
		fes = append(fes, a)
	}

	// ask sends msg from c to fe and returns the name of the server that echoed it.
	ask := func(c *net.UDPConn, fe *net.UDPAddr, msg string) string {
		t.Helper()
		if _, err := c.WriteToUDP([]byte(msg), fe); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		buf := make([]byte, 2048)
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("reply to %q via %s: %v", msg, fe, err)
		}
		if from.Port != fe.Port {
			t.Fatalf("reply to %q came from %s, not %s", msg, from, fe)
		}
		name, body, ok := strings.Cut(string(buf[:n]), ":")
		if !ok || body != msg {
			t.Fatalf("reply %q to %q", buf[:n], msg)
		}
		return name
	}

	seen := map[string]int{}
	for i := range 20 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for j, fe := range []*net.UDPAddr{fes[0], fes[0], fes[1], fes[1], fes[0]} {
			got = append(got, ask(c, fe, fmt.Sprintf("flow %d datagram %d", i, j)))
		}
		c.Close()
		if slices.ContainsFunc(got, func(s string) bool { return s != got[0] }) {
			t.Fatalf("flow %d from %s: servers %v on nodes A, A, B, B, A", i, c.LocalAddr(), got)
		}
		seen[got[0]]++
	}
	if len(seen) < 2 {
		t.Errorf("20 flows all went to %v", seen)
	}
}

// TestE2EMaglevHTTPTwoNodes: on an http frontend maglev hashes hash_key as hash does; two
// nodes with the same config send each user to the same server.
func TestE2EMaglevHTTPTwoNodes(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b", "c")
	cfg := simpleConfig("", "    algorithm: maglev\n    hash_key: header:X-User\n", demoAddrs(bs)...)
	feA, feB := feAddr(t, startWaage(t, cfg), "web"), feAddr(t, startWaage(t, cfg), "web")
	used := map[string]bool{}
	for u := range 24 {
		h := fmt.Sprintf("X-User: user-%d", u)
		got := countBy(append(servedBy(t, feA, 3, u%2 == 0, h), servedBy(t, feB, 3, u%2 == 1, h)...))
		if len(got) != 1 {
			t.Fatalf("%s went to several servers across the two nodes: %v", h, got)
		}
		for k := range got {
			used[k] = true
		}
	}
	if len(used) < 2 {
		t.Errorf("24 distinct keys all went to %v", used)
	}
}
