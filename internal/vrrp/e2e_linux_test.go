package vrrp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests run the real waage binary (and keepalived) in network namespaces; see
// lab_linux_test.go. The advert interval is 200ms to keep them short: Master_Down_Interval is
// then 600ms + Skew_Time (121.9ms at priority 100), and a clean stop hands over after the skew
// alone.
const e2eAdvert = 200 * time.Millisecond

// lbConfig is a balancer: an http frontend on 0.0.0.0:8080 (so it answers on the VIP) in front
// of the name server on 127.0.0.1:9001, whose health the VRRP instance tracks.
func lbConfig(l *lab, prio int) string {
	return fmt.Sprintf(`log: {level: info, access: "off"}
frontends:
  - name: web
    listen: ["0.0.0.0:8080"]
    default_backend: app
backends:
  - name: app
    servers: [{address: "127.0.0.1:9001"}]
    health_check: {type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1}
    outlier_detection: {consecutive_failures: 0}
vrrp:
  - name: vi1
    interface: eth0
    virtual_router_id: 51
    priority: %d
    advert_interval: %s
    virtual_ips: ["%s/24"]
    track_backends: [{backend: app, weight: 100}]
    garp_repeat: 2
    garp_interval: 50ms
`, prio, e2eAdvert, l.vip())
}

func TestE2EFailover(t *testing.T) {
	needLab(t)
	buildWaage(t)
	l := newLab(t, 1, "lb1", "lb2", "client")
	l.helper("lb1", "app1", nil, "WAAGE_VRRP_HELPER=name-server", "WAAGE_HELPER_ADDR=127.0.0.1:9001", "WAAGE_HELPER_NAME=lb1")
	l.helper("lb2", "app2", nil, "WAAGE_VRRP_HELPER=name-server", "WAAGE_HELPER_ADDR=127.0.0.1:9001", "WAAGE_HELPER_NAME=lb2")
	lb1 := l.waage("lb1", "waage-lb1", lbConfig(l, 150))
	lb2 := l.waage("lb2", "waage-lb2", lbConfig(l, 100))
	// LB1 waits its own Master_Down_Interval (682ms) before it claims the VIP.
	l.waitVIP("lb1", 5*time.Second)
	load := &loadRecorder{}
	l.helper("client", "client", load, "WAAGE_VRRP_HELPER=client", "WAAGE_HELPER_URL=http://"+l.vip().String()+":8080/")
	l.waitFor("the client reaches lb1 at the VIP", 5*time.Second, func() bool { return load.lastAnswer() == "lb1" })
	if l.holds("lb2", l.vip()) {
		t.Fatal("lb2 holds the VIP too")
	}

	// SIGKILL: LB2 takes over after Master_Down_Interval without adverts.
	bound := MasterDownInterval(100, e2eAdvert)
	killed := time.Now()
	lb1.kill()
	took := l.waitVIP("lb2", 3*time.Second)
	t.Logf("SIGKILL of the master: VIP on lb2 after %v (3 x advert_interval + skew = %v)", took.Round(time.Millisecond), bound)
	if took > bound+150*time.Millisecond {
		t.Errorf("failover took %v, want within %v (+150ms for scheduling)", took, bound)
	}
	l.waitFor("the client reaches lb2 at the VIP", 3*time.Second, func() bool { return load.lastAnswer() == "lb2" })
	time.Sleep(500 * time.Millisecond)
	checkContinuity(t, load, killed, "lb1", "lb2")

	// LB1 comes back: it clears the VIP its crash left, then preempts LB2.
	restarted := time.Now()
	lb1 = l.waage("lb1", "waage-lb1-2", lbConfig(l, 150))
	took = l.waitFor("lb1 preempts lb2", 5*time.Second, func() bool { return !l.holds("lb2", l.vip()) && l.holds("lb1", l.vip()) })
	t.Logf("restarted master preempts after %v (its master down interval %v)", took.Round(time.Millisecond), MasterDownInterval(150, e2eAdvert))
	l.waitFor("the client reaches lb1 again", 3*time.Second, func() bool { return load.lastAnswer() == "lb1" })
	time.Sleep(300 * time.Millisecond)
	checkContinuity(t, load, restarted, "lb2", "lb1")

	// SIGTERM: priority 0, LB2 takes over after its Skew_Time.
	stopped := time.Now()
	lb1.signal(syscall.SIGTERM)
	took = l.waitVIP("lb2", 2*time.Second)
	t.Logf("SIGTERM of the master: VIP on lb2 after %v (skew time %v, advert interval %v)", took.Round(time.Millisecond), SkewTime(100, e2eAdvert), e2eAdvert)
	if took > e2eAdvert+150*time.Millisecond {
		t.Errorf("failover after a clean stop took %v, want within one advert interval (%v, +150ms)", took, e2eAdvert)
	}
	lb1.stop(t, 5*time.Second)
	if l.holds("lb1", l.vip()) {
		t.Error("lb1 kept the VIP after a clean stop")
	}
	l.waitFor("the client reaches lb2", 3*time.Second, func() bool { return load.lastAnswer() == "lb2" })
	time.Sleep(300 * time.Millisecond)
	checkContinuity(t, load, stopped, "lb1", "lb2")

	lb1 = l.waage("lb1", "waage-lb1-3", lbConfig(l, 150))
	l.waitFor("lb1 preempts lb2 again", 5*time.Second, func() bool { return !l.holds("lb2", l.vip()) && l.holds("lb1", l.vip()) })
	lb1.stop(t, 5*time.Second)
	lb2.stop(t, 5*time.Second)
}

// checkContinuity looks at the client's requests since from: the answers must move from the
// old balancer to the new one with only failed requests in between (no flapping back), and
// every request after the first answer from the new one must succeed. It logs the gap.
func checkContinuity(t *testing.T, load *loadRecorder, from time.Time, old, new string) {
	t.Helper()
	samples := load.since(from)
	var lastOld, firstNew time.Time
	failed, after, afterFailed := 0, 0, 0
	for _, s := range samples {
		switch {
		case !firstNew.IsZero():
			after++
			if s.answer != new {
				afterFailed++
			}
		case s.answer == old:
			lastOld = s.at
		case s.answer == new:
			firstNew = s.at
		default:
			failed++
		}
	}
	if firstNew.IsZero() {
		t.Errorf("client never reached %s (%d samples)", new, len(samples))
		return
	}
	gapFrom := from
	if !lastOld.IsZero() {
		gapFrom = lastOld
	}
	t.Logf("client: %s -> %s, service gap %v with %d failed requests, then %d of %d requests answered",
		old, new, firstNew.Sub(gapFrom).Round(time.Millisecond), failed, after-afterFailed, after)
	if after < 5 || afterFailed > 0 {
		t.Errorf("after the failover %d of %d requests failed", afterFailed, after)
	}
}

func TestE2ETracking(t *testing.T) {
	needLab(t)
	buildWaage(t)
	l := newLab(t, 2, "lb1", "lb2", "client")
	app1 := l.helper("lb1", "app1", nil, "WAAGE_VRRP_HELPER=name-server", "WAAGE_HELPER_ADDR=127.0.0.1:9001", "WAAGE_HELPER_NAME=lb1")
	l.helper("lb2", "app2", nil, "WAAGE_VRRP_HELPER=name-server", "WAAGE_HELPER_ADDR=127.0.0.1:9001", "WAAGE_HELPER_NAME=lb2")
	lb1 := l.waage("lb1", "waage-lb1", lbConfig(l, 150))
	lb2 := l.waage("lb2", "waage-lb2", lbConfig(l, 100))
	l.waitVIP("lb1", 5*time.Second)
	load := &loadRecorder{}
	l.helper("client", "client", load, "WAAGE_VRRP_HELPER=client", "WAAGE_HELPER_URL=http://"+l.vip().String()+":8080/")
	l.waitFor("the client reaches lb1", 5*time.Second, func() bool { return load.lastAnswer() == "lb1" })

	// LB1's only server dies: its priority drops to 50, below LB2's 100, and LB2 preempts.
	down := time.Now()
	app1.kill()
	took := l.waitFor("lb2 takes over", 5*time.Second, func() bool { return l.holds("lb2", l.vip()) && !l.holds("lb1", l.vip()) })
	t.Logf("tracked backend down: VIP on lb2 after %v (health check fall 100ms + master down interval %v)", took.Round(time.Millisecond), MasterDownInterval(100, e2eAdvert))
	l.waitFor("the client reaches lb2", 3*time.Second, func() bool { return load.lastAnswer() == "lb2" })
	time.Sleep(300 * time.Millisecond)
	checkContinuity(t, load, down, "lb1", "lb2")

	// The server is back: LB1's priority is 150 again and it preempts.
	up := time.Now()
	l.helper("lb1", "app1-2", nil, "WAAGE_VRRP_HELPER=name-server", "WAAGE_HELPER_ADDR=127.0.0.1:9001", "WAAGE_HELPER_NAME=lb1")
	took = l.waitFor("lb1 takes the VIP back", 5*time.Second, func() bool { return l.holds("lb1", l.vip()) && !l.holds("lb2", l.vip()) })
	t.Logf("tracked backend back: VIP on lb1 after %v", took.Round(time.Millisecond))
	l.waitFor("the client reaches lb1", 3*time.Second, func() bool { return load.lastAnswer() == "lb1" })
	time.Sleep(300 * time.Millisecond)
	checkContinuity(t, load, up, "lb2", "lb1")
	lb1.stop(t, 5*time.Second)
	lb2.stop(t, 5*time.Second)
}

// keepalivedConfig is a keepalived VRRPv3 instance on the same virtual router as lbConfig.
func keepalivedConfig(l *lab, prio int) string {
	return fmt.Sprintf(`global_defs {
  router_id ka
  vrrp_version 3
  script_user root
  enable_script_security
}
vrrp_instance VI_1 {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority %d
  advert_int %.2f
  virtual_ipaddress {
    %s/24
  }
}
`, prio, e2eAdvert.Seconds(), l.vip())
}

// vrrpOnlyConfig is waage with nothing but the VRRP instance.
func vrrpOnlyConfig(l *lab, prio int) string {
	return fmt.Sprintf(`log: {level: info}
vrrp:
  - name: vi1
    interface: eth0
    virtual_router_id: 51
    priority: %d
    advert_interval: %s
    virtual_ips: ["%s/24"]
`, prio, e2eAdvert, l.vip())
}

func TestE2EKeepalivedInterop(t *testing.T) {
	needLab(t)
	ka, err := exec.LookPath("keepalived")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/keepalived"); serr != nil {
			t.Skip("skipped: keepalived is not installed (scripts/test-deps.sh installs it)")
		}
		ka = "/usr/sbin/keepalived"
	}
	buildWaage(t)
	l := newLab(t, 3, "ka", "wg")
	n := 0
	startKA := func(prio int) *proc {
		n++
		name := fmt.Sprintf("keepalived-%d", n)
		conf := filepath.Join(l.dir, name+".conf")
		writeFile(t, conf, keepalivedConfig(l, prio))
		return l.start("ka", name, nil, nil, ka, "--dont-fork", "--log-console", "--log-detail", "--vrrp",
			"--use-file="+conf, "--pid="+filepath.Join(l.dir, name+".pid"), "--vrrp_pid="+filepath.Join(l.dir, name+"-vrrp.pid"))
	}
	down := MasterDownInterval(100, e2eAdvert)

	t.Run("keepalived master, waage backup", func(t *testing.T) {
		k := startKA(150)
		w := l.waage("wg", "waage-a", vrrpOnlyConfig(l, 100))
		l.waitFor("keepalived is master, waage backup", 5*time.Second, func() bool { return l.holds("ka", l.vip()) && !l.holds("wg", l.vip()) })
		time.Sleep(3 * e2eAdvert)
		if l.holds("wg", l.vip()) {
			t.Fatal("waage took the VIP from a higher-priority keepalived")
		}
		k.kill()
		took := l.waitVIP("wg", 3*time.Second)
		t.Logf("keepalived SIGKILL: waage master after %v (bound %v)", took.Round(time.Millisecond), down)
		if took > down+150*time.Millisecond {
			t.Errorf("waage took over after %v, want within %v", took, down)
		}
		// keepalived back with the higher priority: it preempts and waage steps down.
		k = startKA(150)
		took = l.waitNoVIP("wg", 5*time.Second)
		t.Logf("keepalived back: waage stepped down after %v", took.Round(time.Millisecond))
		l.waitVIP("ka", time.Second)
		// keepalived leaves cleanly (priority 0): waage takes over after its skew time.
		k.signal(syscall.SIGTERM)
		took = l.waitVIP("wg", 3*time.Second)
		t.Logf("keepalived SIGTERM: waage master after %v", took.Round(time.Millisecond))
		if took > 2*e2eAdvert+500*time.Millisecond {
			t.Errorf("waage took over %v after keepalived's priority 0", took)
		}
		k.stop(t, 10*time.Second)
		w.stop(t, 5*time.Second)
		l.waitNoVIP("wg", time.Second)
	})

	t.Run("waage master, keepalived backup", func(t *testing.T) {
		w := l.waage("wg", "waage-b", vrrpOnlyConfig(l, 150))
		k := startKA(100)
		l.waitFor("waage is master, keepalived backup", 5*time.Second, func() bool { return l.holds("wg", l.vip()) && !l.holds("ka", l.vip()) })
		time.Sleep(3 * e2eAdvert)
		if l.holds("ka", l.vip()) {
			t.Fatal("keepalived took the VIP from a higher-priority waage")
		}
		w.kill()
		took := l.waitVIP("ka", 3*time.Second)
		t.Logf("waage SIGKILL: keepalived master after %v (bound %v)", took.Round(time.Millisecond), down)
		if took > down+150*time.Millisecond {
			t.Errorf("keepalived took over after %v, want within %v", took, down)
		}
		// waage back: it clears its stale VIP and preempts keepalived.
		w = l.waage("wg", "waage-b2", vrrpOnlyConfig(l, 150))
		took = l.waitFor("waage preempts keepalived", 5*time.Second, func() bool { return l.holds("wg", l.vip()) && !l.holds("ka", l.vip()) })
		t.Logf("waage back: preempted keepalived after %v", took.Round(time.Millisecond))
		// waage leaves cleanly: keepalived takes over after its skew time.
		w.signal(syscall.SIGTERM)
		took = l.waitVIP("ka", 3*time.Second)
		t.Logf("waage SIGTERM: keepalived master after %v", took.Round(time.Millisecond))
		// keepalived's own timers decide here (and a loaded machine delays its process): the
		// check is that the priority 0 advert was heard, i.e. faster than the master down
		// interval (3 adverts and the skew) that a SIGKILL costs.
		if took >= 3*e2eAdvert {
			t.Errorf("keepalived took over %v after waage's priority 0, want well under the master down interval", took)
		}
		w.stop(t, 5*time.Second)
		k.stop(t, 10*time.Second)
	})
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestE2EUnicastAndInterfaceTracking runs the pair with unicast adverts (one shared peer list,
// each balancer's own address in it) and a tracked second interface.
func TestE2EUnicastAndInterfaceTracking(t *testing.T) {
	needLab(t)
	buildWaage(t)
	l := newLab(t, 4, "lb1", "lb2")
	for _, h := range []string{"lb1", "lb2"} {
		// A veth pair inside the host stands for a second NIC (no dummy module needed).
		l.ip("-n", l.ns(h), "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
		l.ip("-n", l.ns(h), "link", "set", "eth1p", "up")
		l.ip("-n", l.ns(h), "link", "set", "eth1", "up")
	}
	conf := func(prio int) string {
		return fmt.Sprintf(`log: {level: info}
vrrp:
  - interface: eth0
    virtual_router_id: 7
    priority: %d
    advert_interval: %s
    virtual_ips: ["%s/24"]
    unicast_peers: [%s, %s]
    track_interfaces: [{interface: eth1, weight: 100}]
`, prio, e2eAdvert, l.vip(), l.addr("lb1"), l.addr("lb2"))
	}
	lb1 := l.waage("lb1", "waage-lb1", conf(150))
	lb2 := l.waage("lb2", "waage-lb2", conf(100))
	l.waitVIP("lb1", 5*time.Second)
	time.Sleep(3 * e2eAdvert)
	if l.holds("lb2", l.vip()) {
		t.Fatal("lb2 holds the VIP beside lb1: the unicast adverts do not arrive")
	}

	l.ip("-n", l.ns("lb1"), "link", "set", "eth1", "down")
	took := l.waitFor("lb2 takes over", 5*time.Second, func() bool { return l.holds("lb2", l.vip()) && !l.holds("lb1", l.vip()) })
	t.Logf("unicast, tracked interface down: VIP on lb2 after %v", took.Round(time.Millisecond))
	l.ip("-n", l.ns("lb1"), "link", "set", "eth1", "up")
	took = l.waitFor("lb1 takes the VIP back", 5*time.Second, func() bool { return l.holds("lb1", l.vip()) && !l.holds("lb2", l.vip()) })
	t.Logf("unicast, tracked interface up: VIP on lb1 after %v", took.Round(time.Millisecond))

	// The master's own interface goes down: it enters fault and removes the VIP from it (a link
	// that is down keeps its addresses), and lb2 takes over; back up, lb1 preempts again.
	l.ip("-n", l.ns("lb1"), "link", "set", "eth0", "down")
	took = l.waitFor("lb1 in fault, lb2 master", 5*time.Second, func() bool { return l.holds("lb2", l.vip()) && !l.holds("lb1", l.vip()) })
	t.Logf("unicast, the master's interface down: VIP off lb1 and on lb2 after %v", took.Round(time.Millisecond))
	l.ip("-n", l.ns("lb1"), "link", "set", "eth0", "up")
	took = l.waitFor("lb1 master again", 5*time.Second, func() bool { return l.holds("lb1", l.vip()) && !l.holds("lb2", l.vip()) })
	t.Logf("unicast, the master's interface up: VIP on lb1 after %v", took.Round(time.Millisecond))

	lb1.kill()
	took = l.waitVIP("lb2", 3*time.Second)
	t.Logf("unicast, SIGKILL of the master: VIP on lb2 after %v", took.Round(time.Millisecond))
	if bound := MasterDownInterval(100, e2eAdvert); took > bound+150*time.Millisecond {
		t.Errorf("failover took %v, want within %v", took, bound)
	}
	lb2.stop(t, 5*time.Second)
	if l.holds("lb2", l.vip()) {
		t.Error("lb2 kept the VIP after a clean stop")
	}
}
