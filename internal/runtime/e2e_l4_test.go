package runtime

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// tcpEcho is a TCP server that greets each connection with "NAME\n" and then echoes every line
// back prefixed with its name; on EOF from the client it sends "NAME bye\n" and closes, which
// tests half-close (the client shut its side, the server still writes).
type tcpEcho struct {
	name  string
	ln    net.Listener
	conns atomic.Int64
	open  atomic.Int64
	wg    sync.WaitGroup
}

func startTCPEcho(t testing.TB, name string) *tcpEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &tcpEcho{name: name, ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.conns.Add(1)
			e.open.Add(1)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer e.open.Add(-1)
				defer c.Close()
				fmt.Fprintf(c, "%s\n", name)
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						fmt.Fprintf(c, "%s bye\n", name)
						return
					}
					fmt.Fprintf(c, "%s %s", name, line)
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return e
}

func (e *tcpEcho) addr() string { return e.ln.Addr().String() }

// l4Config is one frontend named after its mode ("tcp" or "udp") on 127.0.0.1:0 with backend
// "b" over addrs (servers s1, s2, ...). The extras are inserted into the frontend and the backend
// (indented 4 spaces).
func l4Config(mode, extraFrontend, extraBackend string, addrs ...string) string {
	head := fmt.Sprintf("  - name: %s\n    mode: %s\n    listen: [\"127.0.0.1:0\"]\n    backend: b\n", mode, mode)
	return oneFrontendConfig(head, extraFrontend, extraBackend, addrs...)
}

func tcpConfig(extraFrontend, extraBackend string, addrs ...string) string {
	return l4Config("tcp", extraFrontend, extraBackend, addrs...)
}

// echoSession connects, reads the greeting, sends one line and returns the greeting's server
// name after checking the echo, then half-closes and expects the goodbye.
func echoSession(t testing.TB, addr, line string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return echoExchange(t, c, line, c.(*net.TCPConn).CloseWrite)
}

// echoExchange runs a tcpEcho session on c: greeting, one echoed line, a half-close (by
// closeWrite) after which the goodbye and then EOF must still arrive. It returns the server name.
func echoExchange(t testing.TB, c net.Conn, line string, closeWrite func() error) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(ioTimeout))
	br := bufio.NewReader(c)
	greet, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	name := strings.TrimSpace(greet)
	fmt.Fprintf(c, "%s\n", line)
	got, err := br.ReadString('\n')
	if err != nil || got != name+" "+line+"\n" {
		t.Fatalf("echo: %q, %v; want %q", got, err, name+" "+line+"\n")
	}
	if err := closeWrite(); err != nil {
		t.Fatal(err)
	}
	bye, err := br.ReadString('\n')
	if err != nil || bye != name+" bye\n" {
		t.Fatalf("after half-close: %q, %v; want %q", bye, err, name+" bye\n")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after goodbye: %v, want EOF", err)
	}
	return name
}

// TestE2ETCPEchoEveryAlgorithm: TCP through waage with every algorithm; each session checks
// the greeting, the echo and the half-close in both directions.
func TestE2ETCPEchoEveryAlgorithm(t *testing.T) {
	t.Parallel()
	es := []*tcpEcho{startTCPEcho(t, "a"), startTCPEcho(t, "b"), startTCPEcho(t, "c")}
	for _, alg := range []string{"round_robin", "weighted_round_robin", "least_connections", "source_ip_hash", "random_two_choices", "least_response_time", "hash", "maglev"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			rt := startWaage(t, tcpConfig("", "    algorithm: "+alg+"\n", es[0].addr(), es[1].addr(), es[2].addr()))
			addr := feAddr(t, rt, "tcp")
			seen := map[string]int{}
			for i := 0; i < 30; i++ {
				seen[echoSession(t, addr, fmt.Sprintf("line %d", i))]++
			}
			switch alg {
			case "source_ip_hash":
				if len(seen) != 1 {
					t.Errorf("one client address spread over %v", seen)
				}
			case "round_robin", "weighted_round_robin":
				if seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
					t.Errorf("30 connections spread %v, want 10 each", seen)
				}
			case "hash", "maglev": // keyed on address and port: new ports spread
				if len(seen) < 2 {
					t.Errorf("hash on client address and port used only %v", seen)
				}
			default:
				if len(seen) < 2 {
					t.Errorf("30 sequential connections all on %v", seen)
				}
			}
		})
	}
}

// TestE2ETCPLeastConnectionsCountsLiveConnections: open connections pin their servers; a new
// one goes to the server with the fewest.
func TestE2ETCPLeastConnectionsCountsLiveConnections(t *testing.T) {
	t.Parallel()
	a, b := startTCPEcho(t, "a"), startTCPEcho(t, "b")
	rt := startWaage(t, tcpConfig("", "    algorithm: least_connections\n", a.addr(), b.addr()))
	addr := feAddr(t, rt, "tcp")
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	greet := func() string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		c.SetDeadline(time.Now().Add(ioTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(line)
	}
	first := greet()
	second := greet()
	if first == second {
		t.Fatalf("two live connections both on %s", first)
	}
	// Close the one on a: the next two go to a, then alternate again.
	for i, c := range held {
		if i == 0 {
			c.Close()
		}
	}
	held = held[1:]
	waitFor(t, 2*time.Second, "the closed connection released", func() bool { return rt.Server("b", "s1").InFlight()+rt.Server("b", "s2").InFlight() == 1 })
	if got := greet(); got != first {
		t.Errorf("new connection went to %s, want %s (fewer live connections)", got, first)
	}
}

// TestE2ETCPLargeTransfer: 16 MiB each way at once, byte-exact (the splice path).
func TestE2ETCPLargeTransfer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo until EOF, then close
	}()
	rt := startWaage(t, tcpConfig("", "", ln.Addr().String()))
	c, err := net.Dial("tcp", feAddr(t, rt, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, 16<<20)
	rand.Read(data)
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echoed %d of %d bytes, equal=%v, err %v", len(got), len(data), bytes.Equal(got, data), err)
	}
}

// TestE2ETCPIdleTimeout: a connection with no traffic either way is closed after client_idle;
// one with traffic is not.
func TestE2ETCPIdleTimeout(t *testing.T) {
	t.Parallel()
	e := startTCPEcho(t, "a")
	rt := startWaage(t, tcpConfig("    timeouts: {client_idle: 300ms}\n", "", e.addr()))
	addr := feAddr(t, rt, "tcp")
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	bbr, ibr := bufio.NewReader(busy), bufio.NewReader(idle)
	busy.SetDeadline(time.Now().Add(ioTimeout))
	idle.SetDeadline(time.Now().Add(ioTimeout))
	bbr.ReadString('\n')
	ibr.ReadString('\n')
	start := time.Now()
	for time.Since(start) < 900*time.Millisecond {
		fmt.Fprintf(busy, "ping\n")
		if _, err := bbr.ReadString('\n'); err != nil {
			t.Fatalf("busy connection cut after %s: %v", time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := ibr.ReadString('\n'); err == nil {
		t.Fatal("idle connection got data")
	} else if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle connection closed after %s, want about 300ms", d)
	}
}

// TestE2ETCPFailover: a dead server's connects are retried on another server; with active
// checks it leaves the rotation.
func TestE2ETCPFailover(t *testing.T) {
	t.Parallel()
	a := startTCPEcho(t, "a")
	rt := startWaage(t, tcpConfig("", "    health_check: {type: tcp, interval: 100ms, timeout: 100ms, fall: 1}\n", closedAddr(t), a.addr()))
	addr := feAddr(t, rt, "tcp")
	for i := 0; i < 10; i++ {
		if got := echoSession(t, addr, "x"); got != "a" {
			t.Fatalf("session %d on %s", i, got)
		}
	}
	waitFor(t, 3*time.Second, "s1 DOWN", func() bool { return !rt.Server("b", "s1").Healthy() })
}

// TestE2ETCPMaxConnectionsQueue: with max_connections 1 per server, a second connection waits
// in the queue until the first ends, and one beyond the queue timeout is refused.
func TestE2ETCPMaxConnectionsQueue(t *testing.T) {
	t.Parallel()
	a := startTCPEcho(t, "a")
	rt := startWaage(t, tcpConfig("", "    max_connections: 1\n    queue: {size: 1, timeout: 400ms}\n", a.addr()))
	addr := feAddr(t, rt, "tcp")
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	first.SetDeadline(time.Now().Add(ioTimeout))
	bufio.NewReader(first).ReadString('\n')
	// The second waits: no greeting while the first is open.
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	sbr := bufio.NewReader(second)
	second.SetDeadline(time.Now().Add(150 * time.Millisecond))
	if _, err := sbr.ReadString('\n'); err == nil {
		t.Fatal("second connection served while the server was at max_connections")
	}
	first.Close()
	second.SetDeadline(time.Now().Add(ioTimeout))
	if g, err := sbr.ReadString('\n'); err != nil || g != "a\n" {
		t.Fatalf("queued connection: %q %v", g, err)
	}
	if n := a.open.Load(); n > 1 {
		t.Errorf("server has %d connections open, want at most 1", n)
	}
	// While second holds the slot, a third waits 400ms and is closed.
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	third.SetDeadline(time.Now().Add(ioTimeout))
	start := time.Now()
	if _, err := bufio.NewReader(third).ReadString('\n'); err == nil {
		t.Fatal("third connection served beyond max_connections")
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("third connection refused after %s, want the queue timeout (400ms)", d)
	}
}

// TestE2EL4Reload: a reload keeps tcp and udp sockets (same ports), open TCP sessions go on with
// their server, and new sessions use the new configuration.
func TestE2EL4Reload(t *testing.T) {
	t.Parallel()
	a, b := startTCPEcho(t, "a"), startTCPEcho(t, "b")
	u := startUDPEcho(t, "u")
	conf := func(server string) string {
		return fmt.Sprintf(`log: {access: "off"}
frontends:
  - {name: tcp, mode: tcp, listen: ["127.0.0.1:0"], backend: t}
  - {name: udp, mode: udp, listen: ["127.0.0.1:0"], backend: u}
backends:
  - {name: t, servers: [{name: s, address: %q}]}
  - {name: u, servers: [{name: s, address: %q}]}
`, server, u.addr())
	}
	rt := startWaage(t, conf(a.addr()))
	tcpAddr, udpAddr := feAddr(t, rt, "tcp"), feAddr(t, rt, "udp")
	open, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.SetDeadline(time.Now().Add(ioTimeout))
	obr := bufio.NewReader(open)
	if g, _ := obr.ReadString('\n'); g != "a\n" {
		t.Fatalf("greeting %q", g)
	}
	cfg, err := parseForTest(conf(b.addr()))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if feAddr(t, rt, "tcp") != tcpAddr || feAddr(t, rt, "udp") != udpAddr {
		t.Fatalf("sockets changed on reload: %s %s -> %s %s", tcpAddr, udpAddr, feAddr(t, rt, "tcp"), feAddr(t, rt, "udp"))
	}
	fmt.Fprintf(open, "still here\n")
	if g, err := obr.ReadString('\n'); g != "a still here\n" {
		t.Fatalf("open session after the reload: %q %v", g, err)
	}
	if got := echoSession(t, tcpAddr, "new"); got != "b" {
		t.Errorf("new session after the reload went to %s, want b", got)
	}
	ua, _ := net.ResolveUDPAddr("udp", udpAddr)
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := udpAsk(t, c, "after reload"); got != "u" {
		t.Errorf("udp after the reload: %s", got)
	}
}

// parseForTest parses a test configuration with defaults applied, as startWaage does.
func parseForTest(yamlText string) (*config.Config, error) {
	return config.Parse("e2e.yaml", []byte(yamlText), func(string) (string, bool) { return "", false })
}

// TestE2ETCPStalledReader: a client that stops reading while the server keeps sending is cut
// after about client_idle without progress.
func TestE2ETCPStalledReader(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverDone := make(chan struct{})
	go func() {
		defer close(serverDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	rt := startWaage(t, tcpConfig("    timeouts: {client_idle: 300ms}\n", "", ln.Addr().String()))
	c, err := net.Dial("tcp", feAddr(t, rt, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	select {
	case <-serverDone:
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("stalled connection cut after %s, want about 600ms", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a client that stopped reading kept its connection for 10s")
	}
}

// TestE2EHTTPProxyProtocolKeepAlive: on an http frontend the PROXY header comes once per
// connection; a keep-alive connection that idled long enough to be parked still carries the
// header's client address on its next request.
func TestE2EHTTPProxyProtocolKeepAlive(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("    proxy_protocol: {trusted: [\"127.0.0.1/32\"]}\n", "", bs[0].Addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	if err := rc.write("PROXY TCP4 10.1.2.3 127.0.0.1 4444 80\r\n"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if i > 0 {
			time.Sleep(1300 * time.Millisecond) // past the idle grace: the connection is parked
		}
		resp, body := rc.mustDo(t, get("/", "pp.test"))
		if xff := demoInfo(body)["x-forwarded-for"]; resp.StatusCode != 200 || xff != "10.1.2.3" {
			t.Fatalf("request %d: status %d, X-Forwarded-For %q, want 10.1.2.3", i, resp.StatusCode, xff)
		}
	}
}
