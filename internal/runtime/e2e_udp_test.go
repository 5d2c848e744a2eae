package runtime

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/l4"
)

// udpServerOf returns the UDP server of a udp frontend's (first) socket.
func udpServerOf(t testing.TB, rt *Runtime, frontend string) *l4.UDPServer {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, ub := range rt.udp {
		if ub.owner == frontend {
			return ub.srv
		}
	}
	t.Fatalf("frontend %q has no udp socket", frontend)
	return nil
}

// udpEcho answers each datagram with "NAME:" and the datagram.
type udpEcho struct {
	name string
	pc   *net.UDPConn
	got  atomic.Int64
}

func startUDPEcho(t testing.TB, name string) *udpEcho {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	e := &udpEcho{name: name, pc: pc}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			e.got.Add(1)
			pc.WriteToUDPAddrPort(append([]byte(name+":"), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return e
}

func (e *udpEcho) addr() string { return e.pc.LocalAddr().String() }

// closedUDPAddr is closedAddr for UDP: a loopback port where nothing listens, so datagrams to
// it draw ICMP port unreachable.
func closedUDPAddr(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

func udpConfig(extraFrontend, extraBackend string, addrs ...string) string {
	return l4Config("udp", extraFrontend, extraBackend, addrs...)
}

// udpAsk sends msg from c and returns the server name of the reply.
func udpAsk(t testing.TB, c *net.UDPConn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("reply to %q: %v", msg, err)
	}
	name, body, ok := strings.Cut(string(buf[:n]), ":")
	if !ok || body != msg {
		t.Fatalf("reply %q to %q", buf[:n], msg)
	}
	return name
}

// TestE2EUDPFlows: many client sockets; each keeps its server for all its datagrams (a flow),
// the flows spread over the servers, and idle flows expire.
func TestE2EUDPFlows(t *testing.T) {
	t.Parallel()
	es := []*udpEcho{startUDPEcho(t, "a"), startUDPEcho(t, "b"), startUDPEcho(t, "c")}
	rt := startWaage(t, udpConfig("    timeouts: {client_idle: 1s}\n", "", es[0].addr(), es[1].addr(), es[2].addr()))
	addr, err := net.ResolveUDPAddr("udp", feAddr(t, rt, "udp"))
	if err != nil {
		t.Fatal(err)
	}
	spread := map[string]int{}
	for i := 0; i < 30; i++ {
		c, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		first := udpAsk(t, c, fmt.Sprintf("hello %d", i))
		for j := 0; j < 5; j++ {
			if got := udpAsk(t, c, fmt.Sprintf("again %d.%d", i, j)); got != first {
				t.Fatalf("client %d: datagram %d answered by %s, the flow began on %s", i, j, got, first)
			}
		}
		spread[first]++
		c.Close()
	}
	if spread["a"] != 10 || spread["b"] != 10 || spread["c"] != 10 {
		t.Errorf("30 flows spread %v, want 10 each (round robin)", spread)
	}
	ub := udpServerOf(t, rt, "udp")
	if n := ub.FlowCount(); n != 30 {
		t.Errorf("%d flows open, want 30", n)
	}
	waitFor(t, 3*time.Second, "idle flows expire", func() bool { return ub.FlowCount() == 0 })
	for _, s := range []string{"s1", "s2", "s3"} {
		if n := rt.Server("b", s).InFlight(); n != 0 {
			t.Errorf("%s still counts %d flows", s, n)
		}
	}
}

// TestE2EUDPSourceIPHash: every flow of one client address goes to the same server, whatever its
// port (WireGuard roaming keeps its gateway).
func TestE2EUDPSourceIPHash(t *testing.T) {
	t.Parallel()
	es := []*udpEcho{startUDPEcho(t, "a"), startUDPEcho(t, "b"), startUDPEcho(t, "c")}
	rt := startWaage(t, udpConfig("", "    algorithm: source_ip_hash\n", es[0].addr(), es[1].addr(), es[2].addr()))
	addr, _ := net.ResolveUDPAddr("udp", feAddr(t, rt, "udp"))
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		c, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		seen[udpAsk(t, c, "x")]++
		c.Close()
	}
	if len(seen) != 1 {
		t.Errorf("one client address spread over %v", seen)
	}
}

// TestE2EUDPPerPacket: in per-packet mode one client's datagrams spread over the servers and
// every reply still reaches it.
func TestE2EUDPPerPacket(t *testing.T) {
	t.Parallel()
	es := []*udpEcho{startUDPEcho(t, "a"), startUDPEcho(t, "b")}
	rt := startWaage(t, udpConfig("    udp: {per_packet: true}\n", "", es[0].addr(), es[1].addr()))
	addr, _ := net.ResolveUDPAddr("udp", feAddr(t, rt, "udp"))
	c, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		seen[udpAsk(t, c, fmt.Sprintf("q%d", i))]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Errorf("10 datagrams of one client spread %v, want 5 each", seen)
	}
}

// TestE2EUDPMaxFlowsAndDeadServer: beyond max_flows new clients are dropped; a flow whose server
// answers with port unreachable ends and the client's next datagram finds a live server.
func TestE2EUDPMaxFlowsAndDeadServer(t *testing.T) {
	t.Parallel()
	deadAddr := closedUDPAddr(t)
	live := startUDPEcho(t, "live")
	rt := startWaage(t, udpConfig("    udp: {max_flows: 2}\n", "    outlier_detection: {consecutive_failures: 1}\n", deadAddr, live.addr()))
	addr, _ := net.ResolveUDPAddr("udp", feAddr(t, rt, "udp"))
	c1, _ := net.DialUDP("udp", nil, addr)
	defer c1.Close()
	// The first flow goes to the dead server: no answer, the flow ends on port unreachable.
	c1.Write([]byte("lost"))
	waitFor(t, 3*time.Second, "the dead server's flow ends", func() bool { return rt.Server("b", "s1").Failures.Load() > 0 })
	if got := udpAsk(t, c1, "retry"); got != "live" {
		t.Errorf("after the dead server: %s", got)
	}
	c2, _ := net.DialUDP("udp", nil, addr)
	defer c2.Close()
	udpAsk(t, c2, "two") // any server; two flows now
	c3, _ := net.DialUDP("udp", nil, addr)
	defer c3.Close()
	c3.Write([]byte("three"))
	c3.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c3.Read(make([]byte, 100)); err == nil {
		t.Error("a third flow was served beyond max_flows 2")
	}
}

// TestE2EUDPDeadServerEjected: a server whose port is closed answers flows with port
// unreachable; after consecutive_failures it is ejected and every client lands on the live one.
// A flow whose server goes into maintenance moves to another server on its next datagram.
func TestE2EUDPDeadServerEjected(t *testing.T) {
	t.Parallel()
	deadAddr := closedUDPAddr(t)
	a, b := startUDPEcho(t, "a"), startUDPEcho(t, "b")
	rt := startWaage(t, udpConfig("", "    outlier_detection: {consecutive_failures: 2}\n", deadAddr, a.addr(), b.addr()))
	addr, _ := net.ResolveUDPAddr("udp", feAddr(t, rt, "udp"))
	s1 := rt.Server("b", "s1")
	for i := 0; i < 12 && !s1.Ejected(); i++ {
		c, _ := net.DialUDP("udp", nil, addr)
		c.Write([]byte("probe"))
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		c.Read(make([]byte, 100))
		c.Close()
	}
	if !s1.Ejected() {
		t.Fatalf("the dead server was not ejected (failures %d)", s1.Failures.Load())
	}
	for i := 0; i < 6; i++ {
		c, _ := net.DialUDP("udp", nil, addr)
		if got := udpAsk(t, c, "x"); got != "a" && got != "b" {
			t.Errorf("flow %d on %s", i, got)
		}
		c.Close()
	}
	// Maintenance moves an open flow.
	c, _ := net.DialUDP("udp", nil, addr)
	defer c.Close()
	first := udpAsk(t, c, "one")
	name := map[string]string{"a": "s2", "b": "s3"}[first]
	rt.Server("b", name).SetState(backend.Maintenance)
	if got := udpAsk(t, c, "two"); got == first {
		t.Errorf("the flow stayed on %s after it went into maintenance", first)
	}
}
