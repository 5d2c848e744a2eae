//go:build linux

package runtime

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// freebindAddr is an address of the benchmarking range (RFC 2544) that no interface here has.
const freebindAddr = "198.18.77.1"

// TestFreebind: a frontend with freebind listens on an address that no interface has (TCP and
// UDP), one without it is refused; as root, once the address is made local (an AnyIP route on
// lo, so nothing leaves the host), the frontends serve on it without a reload.
func TestFreebind(t *testing.T) {
	echo := startRawServer(t, func(c net.Conn) { io.Copy(c, c) })
	uecho := startUDPEcho(t, "u")
	conf := func(freebind bool) string {
		return fmt.Sprintf(`frontends:
  - {name: t, mode: tcp, listen: ["%[1]s:0"], backend: t, freebind: %[4]v}
  - {name: u, mode: udp, listen: ["%[1]s:0"], backend: u, freebind: %[4]v}
backends:
  - {name: t, servers: [{name: s, address: %[2]q}]}
  - {name: u, servers: [{name: s, address: %[3]q}]}
`, freebindAddr, echo.addr, uecho.addr(), freebind)
	}
	cfg, err := config.Parse("f.yaml", []byte("log: {access: \"off\"}\n"+conf(false)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := New(slog.New(slog.NewTextHandler(io.Discard, nil))).Apply(cfg); err == nil || !strings.Contains(err.Error(), "assign requested address") {
		t.Fatalf("apply without freebind: %v, want cannot assign requested address", err)
	}
	rt := startWaage(t, conf(true))
	tcpAddr, udpAddr := feAddr(t, rt, "t"), feAddr(t, rt, "u")
	if !strings.HasPrefix(tcpAddr, freebindAddr+":") || !strings.HasPrefix(udpAddr, freebindAddr+":") {
		t.Fatalf("listening on %s and %s, want %s", tcpAddr, udpAddr, freebindAddr)
	}

	if os.Geteuid() != 0 {
		t.Skip("making the address local needs root")
	}
	route := []string{"route", "add", "local", freebindAddr + "/32", "dev", "lo"}
	if out, err := exec.Command("ip", route...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", route, err, out)
	}
	defer exec.Command("ip", "route", "del", "local", freebindAddr+"/32", "dev", "lo").Run()

	c, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 5)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("tcp echo: %q %v", buf, err)
	}
	ua, _ := net.ResolveUDPAddr("udp", udpAddr)
	uc, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if got := udpAsk(t, uc, "ping"); got != "u" {
		t.Fatalf("udp answer from %q, want u", got)
	}
}
