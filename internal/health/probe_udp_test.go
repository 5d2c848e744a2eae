package health

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// serveUDP answers every datagram with reply(datagram), or not at all when reply returns nil,
// until the test ends.
func serveUDP(t *testing.T, reply func([]byte) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := reply(buf[:n]); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	return pc.LocalAddr().String()
}

// freeUDPAddr returns a UDP address on 127.0.0.1 where nothing listens.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestUDPProbe(t *testing.T) {
	echo := serveUDP(t, func(b []byte) []byte { return append([]byte{}, b...) })
	status := serveUDP(t, func([]byte) []byte { return []byte("STATUS degraded\n") })
	silent := serveUDP(t, func([]byte) []byte { return nil })
	closed := freeUDPAddr(t)

	tests := []struct {
		name    string
		hc      config.HealthCheck
		addr    string
		timeout time.Duration
		want    string
	}{
		{"echo", config.HealthCheck{Type: "udp", Send: "ping"}, echo, time.Second, ""},
		{"echo expect", config.HealthCheck{Type: "udp", Send: "ping", Expect: "pi"}, echo, time.Second, ""},
		{"echo hex expect regex", config.HealthCheck{Type: "udp", SendHex: "00 01 ff", Expect: `~^\x00\x01`}, echo, time.Second, ""},
		{"empty datagram", config.HealthCheck{Type: "udp"}, echo, time.Second, ""},
		{"expect mismatch", config.HealthCheck{Type: "udp", Send: "STATUS", Expect: "STATUS ok"}, status, time.Second, `reply "STATUS degraded\n" does not contain "STATUS ok"`},
		{"expect regex mismatch", config.HealthCheck{Type: "udp", Send: "STATUS", Expect: "~ok$"}, status, time.Second, `reply "STATUS degraded\n" does not match ~ok$`},
		{"no listener", config.HealthCheck{Type: "udp", Send: "ping"}, closed, 5 * time.Second, "no listener (port unreachable)"},
		{"silent", config.HealthCheck{Type: "udp", Send: "ping"}, silent, 200 * time.Millisecond, "no reply before timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err, took := runProbe(t, &tt.hc, tt.addr, tt.timeout)
			checkVerdict(t, err, tt.want)
			if took > tt.timeout+slack {
				t.Errorf("took %v with a timeout of %v", took, tt.timeout)
			}
			if tt.name == "no listener" && took > slack {
				t.Errorf("took %v; port unreachable should be reported at once", took)
			}
		})
	}
}
