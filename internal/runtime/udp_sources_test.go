package runtime

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// TestUDPTopSources: a udp frontend's clients appear among the top sources: flows as their
// connections (open while the flow lives), forwarded datagrams as their requests, datagrams
// dropped by packet_rate_per_source as refused.
func TestUDPTopSources(t *testing.T) {
	t.Parallel()
	uecho := startUDPEcho(t, "u")
	rt := startWaage(t, fmt.Sprintf(`frontends:
  - name: dns
    mode: udp
    listen: ["127.0.0.1:0"]
    backend: uecho
    timeouts: {client_idle: 300ms}
    limits: {packet_rate_per_source: 5}
backends:
  - {name: uecho, servers: [{name: u1, address: %q}]}
`, uecho.addr()))
	uc, err := net.DialUDP("udp", nil, rt.Addrs("dns")[0].(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	for _, msg := range []string{"one", "two"} {
		if name := udpAsk(t, uc, msg); name != "u" {
			t.Fatalf("udp reply from %q", name)
		}
	}
	for range 20 { // beyond the 5 per second: most are dropped
		uc.Write([]byte("burst"))
	}
	find := func() (open int64, flows, datagrams, refused uint64) {
		for _, s := range rt.TopSources(10) {
			if s.Frontend == "dns" && s.Addr.String() == "127.0.0.1" {
				return s.Open, s.Conns, s.Requests, s.Rejected
			}
		}
		t.Fatalf("127.0.0.1 is not among the top sources: %+v", rt.TopSources(10))
		return
	}
	waitFor(t, 5*time.Second, "all 22 datagrams counted", func() bool { _, _, d, r := find(); return d+r == 22 })
	open, flows, datagrams, refused := find()
	if open != 1 || flows != 1 || datagrams < 2 || datagrams > 7 || refused < 13 {
		t.Errorf("open %d, flows %d, datagrams %d, refused %d; want 1, 1, 2 to 7, at least 13", open, flows, datagrams, refused)
	}
	waitFor(t, 5*time.Second, "the flow to end", func() bool { o, _, _, _ := find(); return o == 0 })
}
