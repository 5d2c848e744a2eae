package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// icmpProberFor returns an ICMP prober that uses only the given socket kind, or skips the test
// when this machine does not allow that kind (not root, ping sockets not permitted).
func icmpProberFor(t *testing.T, mode icmpMode, v6 bool) *icmpProber {
	t.Helper()
	p, err := newICMPProber(&config.HealthCheck{Type: "icmp"})
	if err != nil {
		t.Fatal(err)
	}
	p.mode = mode
	c, _, err := p.listen(v6)
	if err != nil {
		t.Skipf("no %s ICMP socket here (uid %d, net.ipv4.ping_group_range %s): %v",
			modeName[mode], os.Getuid(), pingGroupRange(), err)
	}
	c.Close()
	return p
}

var modeName = map[icmpMode]string{icmpAuto: "auto", icmpPing: "ping", icmpRaw: "raw"}

func pingGroupRange() string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// hasIPv6Loopback reports whether ::1 is configured on lo, saying why not otherwise.
func hasIPv6Loopback() (bool, string) {
	out, err := exec.Command("ip", "-6", "addr", "show", "lo").Output()
	if err != nil {
		// No ip command: ask the kernel directly.
		b, err := os.ReadFile("/proc/net/if_inet6")
		if err != nil {
			return false, "IPv6 disabled: " + err.Error()
		}
		if strings.Contains(string(b), "00000000000000000000000000000001") {
			return true, ""
		}
		return false, "no ::1 in /proc/net/if_inet6"
	}
	if strings.Contains(string(out), "::1/128") {
		return true, ""
	}
	return false, "`ip -6 addr show lo` has no ::1"
}

func TestICMPProbe(t *testing.T) {
	v6ok, why := hasIPv6Loopback()
	tests := []struct {
		name    string
		mode    icmpMode
		v6      bool
		address string
	}{
		{"auto 127.0.0.1", icmpAuto, false, "127.0.0.1"},
		{"auto host:port", icmpAuto, false, "127.0.0.1:80"},
		{"auto empty port", icmpAuto, false, "127.0.0.1:"},
		{"auto 127.0.0.2", icmpAuto, false, "127.0.0.2:80"},
		{"raw 127.0.0.1", icmpRaw, false, "127.0.0.1"},
		{"ping socket 127.0.0.1", icmpPing, false, "127.0.0.1"},
		{"auto ::1", icmpAuto, true, "::1"},
		{"auto [::1]:port", icmpAuto, true, "[::1]:443"},
		{"raw ::1", icmpRaw, true, "[::1]"},
		{"ping socket ::1", icmpPing, true, "::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.v6 && !v6ok {
				t.Skip(why)
			}
			p := icmpProberFor(t, tt.mode, tt.v6)
			for i := range 3 { // the sequence moves on; each check still finds its reply
				err, took := probeOnce(p, Target{Address: tt.address}, time.Second)
				if err != nil {
					t.Fatalf("check %d: %v (after %v)", i, err, took)
				}
			}
		})
	}
}

// TestICMPProbeConcurrent runs many checks at once, from several probers and to several
// loopback addresses: on raw sockets every check sees every reply, and must take only its own.
func TestICMPProbeConcurrent(t *testing.T) {
	icmpProberFor(t, icmpAuto, false)
	addrs := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3:22"}
	if ok, _ := hasIPv6Loopback(); ok {
		addrs = append(addrs, "::1", "[::1]:80")
	}
	for _, mode := range []icmpMode{icmpAuto, icmpRaw} {
		t.Run(modeName[mode], func(t *testing.T) {
			probers := []*icmpProber{icmpProberFor(t, mode, false), icmpProberFor(t, mode, false)}
			var wg sync.WaitGroup
			errs := make(chan error, 100)
			for i := range 40 {
				wg.Go(func() {
					p := probers[i%len(probers)]
					addr := addrs[i%len(addrs)]
					if err, _ := probeOnce(p, Target{Address: addr}, 2*time.Second); err != nil {
						errs <- fmt.Errorf("%s: %v", addr, err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestICMPProbeFailures(t *testing.T) {
	p := icmpProberFor(t, icmpAuto, false)
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()

	tests := []struct {
		name    string
		ctx     context.Context
		address string
		want    string
	}{
		{"expired", expired, "127.0.0.1", "timeout"},
		{"canceled", canceled, "127.0.0.1", "canceled"},
		{"no host", context.Background(), ":80", "no host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := p.Probe(tt.ctx, Target{Address: tt.address})
			checkVerdict(t, err, tt.want)
			if took := time.Since(start); took > slack {
				t.Errorf("took %v", took)
			}
		})
	}
}

func TestICMPEchoMatch(t *testing.T) {
	// A destination unreachable quotes the original IPv4 header and 8 bytes of the request.
	w := echoMatch{dst: netip.MustParseAddr("192.0.2.7"), id: 0x1234, seq: 7, checkID: true}
	quote := func(dst string, typ byte, id, seq uint16) []byte {
		b := make([]byte, 28)
		b[0] = 0x45
		b[9] = protoICMP
		copy(b[16:20], net.ParseIP(dst).To4())
		b[20] = typ
		b[24], b[25] = byte(id>>8), byte(id)
		b[26], b[27] = byte(seq>>8), byte(seq)
		return b
	}
	tests := []struct {
		name string
		orig []byte
		want bool
	}{
		{"ours", quote("192.0.2.7", 8, 0x1234, 7), true},
		{"other sequence", quote("192.0.2.7", 8, 0x1234, 8), false},
		{"other id", quote("192.0.2.7", 8, 0x4321, 7), false},
		{"other host", quote("192.0.2.8", 8, 0x1234, 7), false},
		{"not an echo request", quote("192.0.2.7", 0, 0x1234, 7), false},
		{"truncated", quote("192.0.2.7", 8, 0x1234, 7)[:24], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := w.unreachable(tt.orig); got != tt.want {
				t.Errorf("unreachable = %v, want %v", got, tt.want)
			}
		})
	}
}
