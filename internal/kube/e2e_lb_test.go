package kube_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/kube"
	"github.com/waage/waage/internal/runtime"
)

const (
	// lbPool is the load balancer pool of these tests: the host makes it local (an AnyIP route
	// on lo) and the backends' namespace routes it to the host, so no packet leaves the two.
	lbPool  = "10.77.1.0/29"
	lbAddr  = "10.77.1.1" // the first address: .0 is the network's
	udpPort = 5353        // the backends' UDP echo port
)

// inNamespace runs f with the calling thread in the backends' network namespace; sockets made
// there stay there.
func inNamespace(f func() error) error {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromName(nsName)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return err
	}
	defer netns.Set(orig)
	return f()
}

// startUDPBackends starts UDP servers on backendIPs:udpPort in the namespace, answering each
// datagram with "ADDRESS:" and the datagram.
func startUDPBackends(t *testing.T) {
	t.Helper()
	var pcs []*net.UDPConn
	err := inNamespace(func() error {
		for _, a := range backendIPs {
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(a), Port: udpPort})
			if err != nil {
				return err
			}
			pcs = append(pcs, pc)
		}
		return nil
	})
	for _, pc := range pcs {
		t.Cleanup(func() { pc.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, pc := range pcs {
		name := backendIPs[i]
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				pc.WriteToUDPAddrPort(append([]byte(name+":"), buf[:n]...), from)
			}
		}()
	}
}

// routePool makes lbPool reach waage: local on the host, routed to the host from the namespace.
func routePool(t *testing.T) {
	t.Helper()
	ip("route", "del", "local", lbPool, "dev", "lo") // left over from an interrupted run
	ip("-n", nsName, "route", "del", lbPool)
	if err := ip("route", "add", "local", lbPool, "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ip("route", "del", "local", lbPool, "dev", "lo") })
	if err := ip("-n", nsName, "route", "add", lbPool, "via", hostAddr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ip("-n", nsName, "route", "del", lbPool) })
}

// nsClient makes requests from inside the namespace, as a client of the cluster's network.
var nsClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
	DisableKeepAlives: true,
	DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = inNamespace(func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	},
}}

func nsGet(url string) (string, error) {
	resp, err := nsClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// nsUDP sends msg to addr from inside the namespace and returns the answering backend.
func nsUDP(addr, msg string) (string, error) {
	var c net.Conn
	err := inNamespace(func() (err error) {
		c, err = net.Dial("udp", addr)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for range 5 { // the first datagram may race the listener's start
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		name, body, _ := strings.Cut(string(buf[:n]), ":")
		if body != msg {
			return "", fmt.Errorf("answer %q to %q", buf[:n], msg)
		}
		return name, nil
	}
	return "", fmt.Errorf("no answer from %s", addr)
}

// lbWaage runs a runtime with a kube provider that has the load balancer pool, as the user of
// the shipped ClusterRole, until the test ends.
func lbWaage(t *testing.T, file *config.Config) *runtime.Runtime {
	t.Helper()
	return runProvider(t, file, *file.Kubernetes)
}

// lbService creates a Service of type LoadBalancer of waage's class with a TCP port 80 (to the
// HTTP backends' 8080) and a UDP port 53 (to udpPort), and its EndpointSlice.
func lbService(t *testing.T, ns, name string, addrs ...string) {
	t.Helper()
	create(t, core.CoreV1().Services(ns).Create, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: ptr(kube.LoadBalancerClass),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			},
		},
	})
	// Gone after the test, so that it takes no address from the next one's pool.
	t.Cleanup(func() { core.CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	create(t, core.DiscoveryV1().EndpointSlices(ns).Create, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "waage-e2e"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("http"), Port: ptr(int32(backendPt)), Protocol: ptr(corev1.ProtocolTCP)},
			{Name: ptr("dns"), Port: ptr(int32(udpPort)), Protocol: ptr(corev1.ProtocolUDP)},
		},
		Endpoints: endpoints(addrs, nil),
	})
}

// updateService changes a Service's spec, retrying on conflicts with the status writer.
func updateService(t *testing.T, ns, name string, change func(*corev1.Service)) {
	t.Helper()
	eventually(t, "update Service "+name, func() error {
		s, err := core.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(s)
		_, err = core.CoreV1().Services(ns).Update(context.Background(), s, metav1.UpdateOptions{})
		return err
	})
}

func lbStatus(ns, name string) ([]corev1.LoadBalancerIngress, error) {
	s, err := core.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return s.Status.LoadBalancer.Ingress, nil
}

// TestE2ELoadBalancerService: a Service of type LoadBalancer gets the pool's first address in
// its status, waage listens there on its TCP and UDP ports (with freebind, before the address
// is routed here) and balances over the endpoints; sessionAffinity ClientIP keeps a client on one
// endpoint; loadBalancerSourceRanges refuse other clients; a loadBalancerIP outside the pool takes the address and the listeners away and
// clears the status; a deleted Service's listeners close.
func TestE2ELoadBalancerService(t *testing.T) {
	needCluster(t)
	startUDPBackends(t)
	file := &config.Config{Log: config.Log{Access: "off"}, Kubernetes: &config.Kubernetes{
		LoadBalancerPool: []string{lbPool},
		StatusAddress:    statusIP,
	}}
	file.ApplyDefaults()
	rt := lbWaage(t, file)
	const ns = "lb"
	namespace(t, ns)
	// Another class's Service is left alone: no address, no listener.
	create(t, core.CoreV1().Services(ns).Create, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "theirs"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr("example.com/lb"),
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	})
	lbService(t, ns, "web", backendIPs...)

	eventually(t, "status", func() error {
		in, err := lbStatus(ns, "web")
		if err != nil {
			return err
		}
		if len(in) != 1 || in[0].IP != lbAddr || in[0].IPMode == nil || *in[0].IPMode != corev1.LoadBalancerIPModeVIP {
			return fmt.Errorf("status.loadBalancer.ingress = %+v, want %s with ipMode VIP", in, lbAddr)
		}
		return nil
	})
	if in, err := lbStatus(ns, "theirs"); err != nil || len(in) != 0 {
		t.Errorf("another class's Service: status %+v %v, want none", in, err)
	}

	// The listeners are bound before the address is routed here: freebind.
	tcpFE, udpFE := "kubernetes/svc-lb-web-80", "kubernetes/svc-lb-web-53/udp"
	var fes []string
	for _, f := range rt.Frontends() {
		if strings.HasPrefix(f.Name, "kubernetes/svc-") {
			fes = append(fes, f.Name+" "+f.Mode+" "+strings.Join(f.Addrs, ",")+" "+f.Backend)
		}
	}
	slices.Sort(fes)
	// The admin API lists the frontends by these names.
	if want := []string{udpFE + " udp " + lbAddr + ":53 lb/web:53/udp", tcpFE + " tcp " + lbAddr + ":80 lb/web:80"}; !slices.Equal(fes, want) {
		t.Errorf("admin frontends:\n%q\nwant\n%q", fes, want)
	}
	routePool(t)

	tcpURL := "http://" + lbAddr + "/"
	seen := map[string]int{}
	eventually(t, "TCP through the pool address", func() error {
		body, err := nsGet(tcpURL)
		seen[body]++
		return err
	})
	for range 30 {
		body, err := nsGet(tcpURL)
		if err != nil {
			t.Fatal(err)
		}
		seen[body]++
	}
	if len(seen) < 2 {
		t.Errorf("TCP: 30 connections went to %v, want them spread over the endpoints", seen)
	}
	udpAddr := net.JoinHostPort(lbAddr, "53")
	udpSeen := map[string]int{}
	for i := range 12 {
		name, err := nsUDP(udpAddr, "q"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		udpSeen[name]++
	}
	if len(udpSeen) < 2 {
		t.Errorf("UDP: 12 flows went to %v, want them spread over the endpoints", udpSeen)
	}
	t.Logf("TCP %v, UDP %v", seen, udpSeen)

	// sessionAffinity ClientIP: one client, one endpoint.
	updateService(t, ns, "web", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP })
	eventually(t, "sessionAffinity ClientIP", func() error {
		got := map[string]bool{}
		for range 12 {
			body, err := nsGet(tcpURL)
			if err != nil {
				return err
			}
			got[body] = true
		}
		if len(got) != 1 {
			return fmt.Errorf("one client reached %v", got)
		}
		return nil
	})

	// loadBalancerSourceRanges: a client outside them is refused.
	updateService(t, ns, "web", func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"10.99.0.0/16"} })
	eventually(t, "loadBalancerSourceRanges refuse", func() error {
		if body, err := nsGet(tcpURL); err == nil {
			return fmt.Errorf("answered %q", body)
		}
		return nil
	})
	updateService(t, ns, "web", func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"10.77.0.0/24"} })
	eventually(t, "loadBalancerSourceRanges allow", func() error { _, err := nsGet(tcpURL); return err })

	// An address outside the pool: nothing is served and the status is cleared.
	updateService(t, ns, "web", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.77.2.1" })
	eventually(t, "status cleared", func() error {
		if in, err := lbStatus(ns, "web"); err != nil || len(in) != 0 {
			return fmt.Errorf("status %+v %v, want none", in, err)
		}
		if a := rt.Addrs(tcpFE); len(a) != 0 {
			return fmt.Errorf("still listening on %v", a)
		}
		return nil
	})
	updateService(t, ns, "web", func(s *corev1.Service) { s.Spec.LoadBalancerIP = lbAddr })
	eventually(t, "served again", func() error { _, err := nsGet(tcpURL); return err })

	// Deleted: the listeners close.
	if err := core.CoreV1().Services(ns).Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "listeners closed", func() error {
		if a := append(rt.Addrs(tcpFE), rt.Addrs(udpFE)...); len(a) != 0 {
			return fmt.Errorf("still listening on %v", a)
		}
		if _, err := nsGet(tcpURL); err == nil {
			return errors.New("still answered")
		}
		return nil
	})
}

// hostHolds reports whether the host-side interface of the backends' network has the address.
func hostHolds(addr string) (bool, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show", "dev", hostIf).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("ip addr: %v: %s", err, out)
	}
	return strings.Contains(string(out), " "+addr+"/32 "), nil
}

// TestE2ELoadBalancerVRRP: with kubernetes.vrrp_instance, the master (waage, alone on the
// backends' network) adds a Service's pool address to its interface as a virtual IP, clients on
// that network reach it by ARP, and the address leaves again with the Service, without a state
// change of the instance.
func TestE2ELoadBalancerVRRP(t *testing.T) {
	needCluster(t)
	const (
		pool = "10.77.0.240/29" // on the backends' network: reached by ARP, not by a route
		addr = "10.77.0.241"
	)
	file := &config.Config{
		Log: config.Log{Access: "off"},
		VRRP: []config.VRRP{{
			Name: "lb", Interface: hostIf, VirtualRouterID: 77, Priority: 200,
			AdvertInterval: config.Duration(100 * time.Millisecond),
			VirtualIPs:     []string{"10.77.0.200/32"},
		}},
		Kubernetes: &config.Kubernetes{LoadBalancerPool: []string{pool}, VRRPInstance: "lb", StatusAddress: statusIP},
	}
	file.ApplyDefaults()
	rt := lbWaage(t, file)
	master := func() error {
		for _, s := range rt.VRRPStatus() {
			if s.Name == "lb" && s.State == "master" {
				return nil
			}
		}
		return fmt.Errorf("vrrp: %+v, want lb master", rt.VRRPStatus())
	}
	eventually(t, "master", master)
	transitions := rt.VRRPStatus()[0].Transitions

	const ns = "lb-vrrp"
	namespace(t, ns)
	lbService(t, ns, "web", backendIPs[0])
	eventually(t, "status and virtual IP", func() error {
		in, err := lbStatus(ns, "web")
		if err != nil || len(in) != 1 || in[0].IP != addr {
			return fmt.Errorf("status %+v %v, want %s", in, err, addr)
		}
		if ok, err := hostHolds(addr); !ok || err != nil {
			return fmt.Errorf("%s holds %s: %v %v", hostIf, addr, ok, err)
		}
		return nil
	})
	if vips := rt.VRRPStatus()[0].VirtualIPs; !slices.Contains(vips, addr+"/32") {
		t.Errorf("vrrp virtual IPs %v, want %s/32 among them", vips, addr)
	}
	eventually(t, "TCP through the virtual IP", func() error {
		body, err := nsGet("http://" + addr + "/")
		if err == nil && body != backendIPs[0] {
			err = fmt.Errorf("answer %q, want %s", body, backendIPs[0])
		}
		return err
	})

	if err := core.CoreV1().Services(ns).Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "virtual IP removed", func() error {
		if ok, err := hostHolds(addr); ok || err != nil {
			return fmt.Errorf("%s still holds %s (%v)", hostIf, addr, err)
		}
		return nil
	})
	if err := master(); err != nil {
		t.Error(err)
	}
	if got := rt.VRRPStatus()[0].Transitions; got != transitions {
		t.Errorf("vrrp transitions %d -> %d: the address change flapped the instance", transitions, got)
	}
}
