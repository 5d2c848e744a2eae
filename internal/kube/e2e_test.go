package kube_test

// End-to-end tests against a real kube-apiserver and etcd (started once in TestMain through
// envtest), with the backends in a network namespace the tests create: the API server refuses
// loopback endpoint addresses. They need root (for the namespace) and the kube-apiserver that
// scripts/test-deps.sh builds into $HOME/.cache/waage/k8s; as root a missing one is built here.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	netv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/kube"
	"github.com/waage/waage/internal/runtime"
)

const (
	nsName    = "waage-kube-e2e"
	hostIf    = "wkube0"
	peerIf    = "wkube1"
	hostAddr  = "10.77.0.1"
	statusIP  = "192.0.2.10" // documentation address: written into status, never contacted
	backendPt = 8080
)

// backendIPs are the backends' addresses inside the namespace; each answers with its address.
var backendIPs = []string{"10.77.0.2", "10.77.0.3", "10.77.0.4"}

var (
	skipReason string
	restCfg    *rest.Config // the cluster admin's, for the tests' own objects
	waageCfg   *rest.Config // a user with only the ClusterRole of examples/kubernetes/rbac.yaml
	core       kubernetes.Interface
	gw         gwclient.Interface
	gwPort     int
	ingPort    int
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	start := time.Now()
	cleanup, err := setup()
	defer cleanup()
	if err != nil {
		if skipReason == "" {
			fmt.Fprintln(os.Stderr, "kube e2e setup:", err)
			return 1
		}
	}
	if skipReason != "" {
		fmt.Println("kube: end-to-end tests skipped:", skipReason)
	} else {
		fmt.Printf("kube: API server, etcd and backends ready in %v\n", time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// apiserverPath finds the kube-apiserver binary, building it when missing and root.
func apiserverPath() (string, error) {
	dir := os.Getenv("WAAGE_K8S_CACHE") // as scripts/test-deps.sh
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, ".cache", "waage", "k8s")
	}
	p := filepath.Join(dir, "kube-apiserver")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		skipReason = p + " is missing (make test-deps builds it) and not root"
		return "", errors.New(skipReason)
	}
	_, file, _, _ := goruntime.Caller(0)
	mod := filepath.Join(filepath.Dir(file), "..", "..", "test", "k8s", "apiserver")
	fmt.Println("kube: building kube-apiserver into", p, "(about 11 minutes the first time)")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-ldflags", "-s -w", "-o", p+".tmp", "k8s.io/kubernetes/cmd/kube-apiserver")
	cmd.Dir, cmd.Stdout, cmd.Stderr = mod, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building kube-apiserver: %w", err)
	}
	return p, os.Rename(p+".tmp", p)
}

func etcdPath() (string, error) {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		skipReason = "etcd is missing (apt-get install etcd-server) and not root"
		return "", errors.New(skipReason)
	}
	cmd := exec.Command("apt-get", "install", "-y", "-qq", "etcd-server")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get install etcd-server: %v: %s", err, out)
	}
	return exec.LookPath("etcd")
}

func setup() (cleanup func(), err error) {
	var cleanups []func()
	cleanup = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	if os.Geteuid() != 0 {
		skipReason = "needs root for the backends' network namespace"
		return cleanup, nil
	}
	apiserver, err := apiserverPath()
	if err != nil {
		return cleanup, err
	}
	etcd, err := etcdPath()
	if err != nil {
		return cleanup, err
	}
	assets, err := os.MkdirTemp("", "waage-kube-assets-")
	if err != nil {
		return cleanup, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(assets) })
	for name, target := range map[string]string{"kube-apiserver": apiserver, "etcd": etcd} {
		if err := os.Symlink(target, filepath.Join(assets, name)); err != nil {
			return cleanup, err
		}
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return cleanup, fmt.Errorf("finding the Gateway API CRDs: %w", err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")},
		ErrorIfCRDPathMissing: true,
	}
	t0 := time.Now()
	if restCfg, err = env.Start(); err != nil {
		return cleanup, fmt.Errorf("starting the API server: %w", err)
	}
	fmt.Printf("kube: envtest started in %v\n", time.Since(t0).Round(time.Millisecond))
	cleanups = append(cleanups, func() { env.Stop() })
	core = kubernetes.NewForConfigOrDie(restCfg)
	gw = gwclient.NewForConfigOrDie(restCfg)
	if waageCfg, err = shippedRole(env); err != nil {
		return cleanup, err
	}

	stop, err := startBackends()
	cleanups = append(cleanups, stop)
	if err != nil {
		return cleanup, err
	}
	gwPort, ingPort = freePort(), freePort()
	return cleanup, nil
}

// shippedRole creates the ClusterRole and the Role (for the status writer's Lease, in namespace
// waage) of examples/kubernetes/rbac.yaml, and a user bound to both, so waage runs in the tests
// with exactly the permissions the example grants.
func shippedRole(env *envtest.Environment) (*rest.Config, error) {
	_, file, _, _ := goruntime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "examples", "kubernetes", "rbac.yaml"))
	if err != nil {
		return nil, err
	}
	const user = "waage-e2e"
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	ctx := context.Background()
	roles := 0
	for doc := range strings.SplitSeq(string(data), "\n---\n") {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("rbac.yaml: %w", err)
		}
		switch head.Kind {
		case "Namespace":
			var ns corev1.Namespace
			if err := yaml.UnmarshalStrict([]byte(doc), &ns); err != nil {
				return nil, fmt.Errorf("rbac.yaml: %w", err)
			}
			if _, err := core.CoreV1().Namespaces().Create(ctx, &ns, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
				return nil, fmt.Errorf("rbac.yaml: %w", err)
			}
			if _, err := core.RbacV1().ClusterRoles().Create(ctx, &r, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			if _, err := core.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: user},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: r.Name},
				Subjects:   subjects,
			}, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			roles++
		case "Role":
			var r rbacv1.Role
			if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
				return nil, fmt.Errorf("rbac.yaml: %w", err)
			}
			if _, err := core.RbacV1().Roles(r.Namespace).Create(ctx, &r, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			if _, err := core.RbacV1().RoleBindings(r.Namespace).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: user},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: r.Name},
				Subjects:   subjects,
			}, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			roles++
		}
	}
	if roles != 2 {
		return nil, fmt.Errorf("rbac.yaml: %d roles, want a ClusterRole and a Role", roles)
	}
	u, err := env.AddUser(envtest.User{Name: user}, restCfg)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// startBackends makes the network namespace with a veth pair (host side 10.77.0.1/24) and HTTP
// servers on backendIPs inside it, answering with their address.
func startBackends() (func(), error) {
	ip("netns", "del", nsName) // left over from an interrupted run
	stop := func() { ip("netns", "del", nsName) }
	for _, args := range [][]string{
		{"netns", "add", nsName},
		{"link", "add", hostIf, "type", "veth", "peer", "name", peerIf, "netns", nsName},
		{"addr", "add", hostAddr + "/24", "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", nsName, "link", "set", peerIf, "up"},
		{"-n", nsName, "link", "set", "lo", "up"},
	} {
		if err := ip(args...); err != nil {
			return stop, err
		}
	}
	for _, a := range backendIPs {
		if err := ip("-n", nsName, "addr", "add", a+"/24", "dev", peerIf); err != nil {
			return stop, err
		}
	}
	var lns []net.Listener
	err := func() error {
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
		for _, a := range backendIPs {
			var ln net.Listener
			for range 50 { // the address is tentative for a moment after it was added
				if ln, err = net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(backendPt))); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	}()
	var srvs []*http.Server
	for i, ln := range lns {
		name := backendIPs[i]
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Path", r.URL.Path)
			w.Header().Set("X-Host", r.Host)
			io.WriteString(w, name)
		})}
		srvs = append(srvs, srv)
		go srv.Serve(ln)
	}
	return func() {
		for _, s := range srvs {
			s.Close()
		}
		stop()
	}, err
}

// waage runs a runtime with a kube provider, beside an empty file config, until the test ends.
func waage(t *testing.T) {
	t.Helper()
	file := &config.Config{Log: config.Log{Access: "off"}}
	file.ApplyDefaults()
	runProvider(t, file, config.Kubernetes{
		IngressListen: config.IngressListen{HTTP: []string{"127.0.0.1:" + strconv.Itoa(ingPort)}},
		GatewayBind:   "127.0.0.1",
		StatusAddress: statusIP,
	})
}

// runProvider runs a runtime that serves file merged with what a kube provider with the section
// k translates, as the user of the shipped ClusterRole, until the test ends. It returns once the
// provider's first translation was applied.
func runProvider(t *testing.T, file *config.Config, k config.Kubernetes, opts ...func(*kube.Provider)) *runtime.Runtime {
	t.Helper()
	rt := runtime.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var mu sync.Mutex
	p := &kube.Provider{
		Config:   k,
		REST:     waageCfg,
		CertDir:  t.TempDir(),
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Debounce: 100 * time.Millisecond,
		Apply: func(r *kube.Result) error {
			mu.Lock()
			defer mu.Unlock()
			return rt.Apply(kube.Merge(file, r))
		},
	}
	for _, o := range opts {
		o(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan error, 1)
	done := make(chan struct{})
	go func() { p.Run(ctx, ready); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		rt.Shutdown(sctx)
	})
	select {
	case err, ok := <-ready:
		if ok && err != nil {
			t.Fatalf("provider: %v", err)
		}
	case <-time.After(30 * time.Second):
		// The watches never synced: the ClusterRole lacks a permission (the log says which).
		t.Fatal("provider: no first sync within 30s")
	}
	return rt
}

func needCluster(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func create[T any](t *testing.T, f func(context.Context, T, metav1.CreateOptions) (T, error), obj T) T {
	t.Helper()
	out, err := f(context.Background(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %T: %v", obj, err)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// makeService creates a Service with port 80 -> 8080 and its EndpointSlice with the addresses.
func makeService(t *testing.T, ns, name string, addrs ...string) *discoveryv1.EndpointSlice {
	t.Helper()
	create(t, core.CoreV1().Services(ns).Create, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	})
	return create(t, core.DiscoveryV1().EndpointSlices(ns).Create, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "waage-e2e"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(backendPt)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   endpoints(addrs, nil),
	})
}

// endpoints lists ready endpoints, and terminating (still serving) ones.
func endpoints(ready, terminating []string) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for _, a := range ready {
		out = append(out, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)}})
	}
	for _, a := range terminating {
		out = append(out, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}})
	}
	return out
}

func namespace(t *testing.T, name string) {
	t.Helper()
	create(t, core.CoreV1().Namespaces().Create, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

// get returns the status and body of a request to waage.
func get(port int, path string, header ...string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		if strings.EqualFold(header[i], "Host") {
			req.Host = header[i+1] // the client sends req.Host, not a Host header field
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// eventually retries f for up to 10s.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

func expect(port int, path, want string, header ...string) func() error {
	return func() error {
		st, body, err := get(port, path, header...)
		if err != nil {
			return err
		}
		if st != 200 || body != want {
			return fmt.Errorf("GET %s: %d %q, want 200 %q", path, st, body, want)
		}
		return nil
	}
}

func hasCondition(cs []metav1.Condition, typ string, status metav1.ConditionStatus, reason string) error {
	c := meta.FindStatusCondition(cs, typ)
	if c == nil || c.Status != status || c.Reason != reason {
		return fmt.Errorf("condition %s = %+v, want %s/%s", typ, c, status, reason)
	}
	return nil
}

// gatewaySetup creates a GatewayClass and a Gateway listening on gwPort for routes from all
// namespaces, once for all tests.
var gatewayOnce sync.Once

func gatewaySetup(t *testing.T) {
	t.Helper()
	gatewayOnce.Do(func() {
		create(t, gw.GatewayV1().GatewayClasses().Create, &gwv1.GatewayClass{
			ObjectMeta: metav1.ObjectMeta{Name: "waage"},
			Spec:       gwv1.GatewayClassSpec{ControllerName: config.DefaultControllerName},
		})
		create(t, gw.GatewayV1().Gateways("default").Create, &gwv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Name: "gw"},
			Spec: gwv1.GatewaySpec{GatewayClassName: "waage", Listeners: []gwv1.Listener{{
				Name: "http", Port: int32(gwPort), Protocol: gwv1.HTTPProtocolType,
				AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: ptr(gwv1.NamespacesFromAll)}},
			}}},
		})
	})
}

func parentRef() []gwv1.ParentReference {
	return []gwv1.ParentReference{{Name: "gw", Namespace: ptr(gwv1.Namespace("default"))}}
}

func backendRef(name string, weight int32) gwv1.HTTPBackendRef {
	return gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
		Name: gwv1.ObjectName(name), Port: ptr(int32(80))}, Weight: ptr(weight)}}
}

func prefix(p string) []gwv1.HTTPRouteMatch {
	return []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchPathPrefix), Value: ptr(p)}}}
}

func TestE2EGatewayWeightsHeadersAndStatus(t *testing.T) {
	needCluster(t)
	waage(t)
	gatewaySetup(t)
	const ns = "weights"
	namespace(t, ns)
	makeService(t, ns, "one", backendIPs[0])
	makeService(t, ns, "three", backendIPs[1])
	create(t, gw.GatewayV1().HTTPRoutes(ns).Create, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "split"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: parentRef()},
			Rules: []gwv1.HTTPRouteRule{
				{Matches: prefix("/split"), BackendRefs: []gwv1.HTTPBackendRef{backendRef("one", 1), backendRef("three", 3)}},
				{
					Matches: []gwv1.HTTPRouteMatch{{
						Path:    &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchPathPrefix), Value: ptr("/split")},
						Headers: []gwv1.HTTPHeaderMatch{{Name: "X-Canary", Value: "yes"}},
					}},
					BackendRefs: []gwv1.HTTPBackendRef{backendRef("one", 1)},
				},
			},
		},
	})
	create(t, gw.GatewayV1().HTTPRoutes(ns).Create, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "broken"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: parentRef()},
			Rules:           []gwv1.HTTPRouteRule{{Matches: prefix("/missing"), BackendRefs: []gwv1.HTTPBackendRef{backendRef("gone", 1)}}},
		},
	})

	// The header match is more specific, so it wins although it comes second.
	eventually(t, "header match", expect(gwPort, "/split/x", backendIPs[0], "X-Canary", "yes"))
	counts := map[string]int{}
	for range 400 {
		st, body, err := get(gwPort, "/split/x")
		if err != nil || st != 200 {
			t.Fatalf("GET /split/x: %d %q %v", st, body, err)
		}
		counts[body]++
	}
	if a, b := counts[backendIPs[0]], counts[backendIPs[1]]; a < 80 || a > 120 || a+b != 400 {
		t.Errorf("400 requests split %v, want about 100/300", counts)
	}
	t.Logf("1:3 split over 400 requests: %v", counts)

	eventually(t, "missing backend answers 500", func() error {
		st, body, err := get(gwPort, "/missing")
		if err != nil || st != 500 {
			return fmt.Errorf("GET /missing: %d %q %v, want 500", st, body, err)
		}
		return nil
	})

	ctx := context.Background()
	eventually(t, "status", func() error {
		gc, err := gw.GatewayV1().GatewayClasses().Get(ctx, "waage", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := hasCondition(gc.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted"); err != nil {
			return fmt.Errorf("GatewayClass: %w", err)
		}
		g, err := gw.GatewayV1().Gateways("default").Get(ctx, "gw", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := errors.Join(hasCondition(g.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted"),
			hasCondition(g.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed")); err != nil {
			return fmt.Errorf("Gateway: %w", err)
		}
		if len(g.Status.Addresses) != 1 || g.Status.Addresses[0].Value != statusIP {
			return fmt.Errorf("Gateway addresses = %+v", g.Status.Addresses)
		}
		if len(g.Status.Listeners) != 1 || g.Status.Listeners[0].AttachedRoutes < 2 {
			return fmt.Errorf("Gateway listeners = %+v", g.Status.Listeners)
		}
		for name, reason := range map[string]string{"split": "ResolvedRefs", "broken": "BackendNotFound"} {
			r, err := gw.GatewayV1().HTTPRoutes(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(r.Status.Parents) != 1 {
				return fmt.Errorf("HTTPRoute %s parents = %+v", name, r.Status.Parents)
			}
			st := metav1.ConditionTrue
			if reason != "ResolvedRefs" {
				st = metav1.ConditionFalse
			}
			if err := errors.Join(hasCondition(r.Status.Parents[0].Conditions, "Accepted", metav1.ConditionTrue, "Accepted"),
				hasCondition(r.Status.Parents[0].Conditions, "ResolvedRefs", st, reason)); err != nil {
				return fmt.Errorf("HTTPRoute %s: %w", name, err)
			}
		}
		return nil
	})

	// The Service appears: the route resolves and serves within a second or so.
	makeService(t, ns, "gone", backendIPs[2])
	eventually(t, "the new Service serves", expect(gwPort, "/missing", backendIPs[2]))
}

func TestE2EIngress(t *testing.T) {
	needCluster(t)
	waage(t)
	const ns = "ingress"
	namespace(t, ns)
	makeService(t, ns, "web", backendIPs[1])
	create(t, core.NetworkingV1().Ingresses(ns).Create, &netv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: netv1.IngressSpec{
			IngressClassName: ptr("waage"),
			Rules: []netv1.IngressRule{{IngressRuleValue: netv1.IngressRuleValue{HTTP: &netv1.HTTPIngressRuleValue{Paths: []netv1.HTTPIngressPath{{
				Path: "/app", PathType: ptr(netv1.PathTypePrefix),
				Backend: netv1.IngressBackend{Service: &netv1.IngressServiceBackend{Name: "web", Port: netv1.ServiceBackendPort{Number: 80}}},
			}}}}}},
		},
	})
	eventually(t, "ingress route", expect(ingPort, "/app/page", backendIPs[1]))
	if st, _, err := get(ingPort, "/application"); err != nil || st != 404 {
		t.Errorf("GET /application: %d %v, want 404 (prefixes match whole path elements)", st, err)
	}
	eventually(t, "ingress status", func() error {
		ing, err := core.NetworkingV1().Ingresses(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if lb := ing.Status.LoadBalancer.Ingress; len(lb) != 1 || lb[0].IP != statusIP {
			return fmt.Errorf("status.loadBalancer = %+v", ing.Status.LoadBalancer)
		}
		return nil
	})
}

// TestE2EEndpointChangesUnderLoad shrinks a Service's EndpointSlice from 3 endpoints to 1 (the others
// terminating first, so they drain) and grows it back while clients send requests: none may fail.
func TestE2EEndpointChangesUnderLoad(t *testing.T) {
	needCluster(t)
	waage(t)
	gatewaySetup(t)
	const ns = "churn"
	namespace(t, ns)
	es := makeService(t, ns, "pool", backendIPs...)
	create(t, gw.GatewayV1().HTTPRoutes(ns).Create, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "pool"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: parentRef()},
			Rules:           []gwv1.HTTPRouteRule{{Matches: prefix("/pool"), BackendRefs: []gwv1.HTTPBackendRef{backendRef("pool", 1)}}},
		},
	})
	eventually(t, "route", func() error {
		st, _, err := get(gwPort, "/pool")
		if err != nil || st != 200 {
			return fmt.Errorf("GET /pool: %d %v", st, err)
		}
		return nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	var sent, failed atomic.Int64
	seen := sync.Map{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for n := 0; n < 5000 && ctx.Err() == nil; n++ { // bounded in count and time
				st, body, err := get(gwPort, "/pool")
				sent.Add(1)
				if err != nil || st != 200 {
					failed.Add(1)
					t.Errorf("GET /pool: %d %q %v", st, body, err)
					continue
				}
				seen.Store(body, true)
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	update := func(ready, terminating []string) {
		t.Helper()
		cur, err := core.DiscoveryV1().EndpointSlices(ns).Get(context.Background(), es.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Endpoints = endpoints(ready, terminating)
		if _, err := core.DiscoveryV1().EndpointSlices(ns).Update(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	update(backendIPs[:1], backendIPs[1:]) // two terminate: they drain
	update(backendIPs[:1], nil)            // and go
	seen.Clear()
	time.Sleep(300 * time.Millisecond)
	onlyFirst := true
	seen.Range(func(k, _ any) bool { onlyFirst = onlyFirst && k == backendIPs[0]; return true })
	update(backendIPs, nil) // grow back
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	if !onlyFirst {
		t.Error("requests reached removed endpoints after the shrink")
	}
	all := 0
	seen.Range(func(any, any) bool { all++; return true })
	if all != len(backendIPs) {
		t.Errorf("after growing back, %d endpoints served, want %d", all, len(backendIPs))
	}
	t.Logf("%d requests, %d failed", sent.Load(), failed.Load())
	if sent.Load() < 200 {
		t.Errorf("only %d requests sent: the load was too light to tell", sent.Load())
	}
}

// selfSigned returns a PEM certificate and key for name, with the serial number given.
func selfSigned(t *testing.T, name string, serial int64) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), cert
}

// TestE2EHTTPSListener serves an HTTPS listener with a certificate from a Secret, then replaces
// the Secret: the new certificate is served without a restart.
func TestE2EHTTPSListener(t *testing.T) {
	needCluster(t)
	waage(t)
	gatewaySetup(t)
	const ns, host = "tls", "secure.example.com"
	namespace(t, ns)
	makeService(t, ns, "app", backendIPs[2])
	certPEM, keyPEM, cert1 := selfSigned(t, host, 1)
	create(t, core.CoreV1().Secrets(ns).Create, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cert"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	})
	port := freePort()
	create(t, gw.GatewayV1().Gateways(ns).Create, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "secure"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "waage", Listeners: []gwv1.Listener{{
			Name: "https", Port: int32(port), Protocol: gwv1.HTTPSProtocolType, Hostname: ptr(gwv1.Hostname(host)),
			TLS: &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: "cert"}}},
		}}},
	})
	create(t, gw.GatewayV1().HTTPRoutes(ns).Create, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "secure"}}},
			Rules:           []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{backendRef("app", 1)}}},
		},
	})
	// served fetches https://host/ and returns the serial number of the certificate served.
	served := func(trust *x509.Certificate) (int64, error) {
		pool := x509.NewCertPool()
		pool.AddCert(trust)
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host},
		}}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://127.0.0.1:"+strconv.Itoa(port)+"/", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != backendIPs[2] {
			return 0, fmt.Errorf("GET https://%s/: %d %q", host, resp.StatusCode, body)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
	}
	eventually(t, "HTTPS with the Secret's certificate", func() error {
		_, err := served(cert1)
		return err
	})
	certPEM, keyPEM, cert2 := selfSigned(t, host, 2)
	s, err := core.CoreV1().Secrets(ns).Get(context.Background(), "cert", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}
	if _, err := core.CoreV1().Secrets(ns).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the replaced Secret's certificate", func() error {
		serial, err := served(cert2)
		if err == nil && serial != 2 {
			err = fmt.Errorf("serial %d served, want 2", serial)
		}
		return err
	})
}

// TestE2EBinary runs the waage binary with a config file that has frontends of its own and a
// kubernetes section: the cluster's Ingress and the file's frontend are served together, and a
// reload of the file keeps the cluster's routes.
func TestE2EBinary(t *testing.T) {
	needCluster(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "waage")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/waage")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["e2e"] = &clientcmdapi.Cluster{Server: waageCfg.Host, CertificateAuthorityData: waageCfg.CAData}
	kc.AuthInfos["waage"] = &clientcmdapi.AuthInfo{ClientCertificateData: waageCfg.CertData, ClientKeyData: waageCfg.KeyData, Token: waageCfg.BearerToken}
	kc.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "waage"}
	kc.CurrentContext = "e2e"
	if err := clientcmd.WriteToFile(*kc, filepath.Join(dir, "kubeconfig")); err != nil {
		t.Fatal(err)
	}
	filePort, ingressPort, ingressPort2 := freePort(), freePort(), freePort()
	section := func(port int) string {
		return fmt.Sprintf(`kubernetes:
  kubeconfig: kubeconfig
  gateway_bind: 127.0.0.1
  ingress_listen: {http: ["127.0.0.1:%d"]}
  status_address: %s
`, port, statusIP)
	}
	writeConfigWith := func(server, kube string) {
		t.Helper()
		cfg := fmt.Sprintf(`log: {access: "off"}
frontends:
  - name: file
    listen: ["127.0.0.1:%d"]
    default_backend: b
backends:
  - name: b
    servers: [{name: s, address: "%s:%d"}]
`, filePort, server, backendPt) + kube
		tmp := filepath.Join(dir, "waage.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "waage.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig := func(server string) { t.Helper(); writeConfigWith(server, section(ingressPort)) }
	writeConfig(backendIPs[0])

	const ns = "binary"
	namespace(t, ns)
	es := makeService(t, ns, "site", backendIPs[1])
	create(t, core.NetworkingV1().Ingresses(ns).Create, &netv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "site"},
		Spec: netv1.IngressSpec{
			IngressClassName: ptr("waage"),
			Rules: []netv1.IngressRule{{Host: "site.example.com", IngressRuleValue: netv1.IngressRuleValue{HTTP: &netv1.HTTPIngressRuleValue{Paths: []netv1.HTTPIngressPath{{
				Path: "/", PathType: ptr(netv1.PathTypePrefix),
				Backend: netv1.IngressBackend{Service: &netv1.IngressServiceBackend{Name: "site", Port: netv1.ServiceBackendPort{Number: 80}}},
			}}}}}},
		},
	})

	var logs strings.Builder
	cmd := exec.Command(bin, "run", "-c", filepath.Join(dir, "waage.yaml"))
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: &logs}, &lockedWriter{w: &logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("waage's log:\n%s", logs.String())
		}
	}()
	host := func(h string) []string { return []string{"Host", h} }
	eventually(t, "the file's frontend", expect(filePort, "/", backendIPs[0]))
	eventually(t, "the Ingress", expect(ingressPort, "/", backendIPs[1], host("site.example.com")...))

	writeConfig(backendIPs[2]) // a reload of the file keeps the cluster's routes
	eventually(t, "the reloaded file", expect(filePort, "/", backendIPs[2]))
	if err := expect(ingressPort, "/", backendIPs[1], host("site.example.com")...)(); err != nil {
		t.Errorf("after the file's reload: %v", err)
	}

	es.Endpoints = endpoints(backendIPs[:1], nil) // a cluster change keeps the file's
	if _, err := core.DiscoveryV1().EndpointSlices(ns).Update(context.Background(), es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the changed EndpointSlice", expect(ingressPort, "/", backendIPs[0], host("site.example.com")...))
	if err := expect(filePort, "/", backendIPs[2])(); err != nil {
		t.Errorf("after the cluster's change: %v", err)
	}

	// A changed kubernetes section applies on reload: the provider starts again with it.
	writeConfigWith(backendIPs[2], section(ingressPort2))
	eventually(t, "the Ingress on the section's new port", expect(ingressPort2, "/", backendIPs[0], host("site.example.com")...))
	closed := func(port int) func() error {
		return func() error {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				c.Close()
				return errors.New("still listening")
			}
			return nil
		}
	}
	eventually(t, "the old Ingress port closed", closed(ingressPort))
	// Without the section, the cluster's routes go and the file's stay.
	writeConfigWith(backendIPs[2], "")
	eventually(t, "the Ingress port closed with the section", closed(ingressPort2))
	if err := expect(filePort, "/", backendIPs[2])(); err != nil {
		t.Errorf("after the section was removed: %v", err)
	}
}

// lockedWriter serialises writes from the two output streams of a process.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestE2EDebounce checks that a burst of changes makes few reloads, and that a single change is
// applied within a second.
func TestE2EDebounce(t *testing.T) {
	needCluster(t)
	gatewaySetup(t)
	const ns = "burst"
	namespace(t, ns)
	es := makeService(t, ns, "svc", backendIPs[0])
	create(t, gw.GatewayV1().HTTPRoutes(ns).Create, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "r"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: parentRef()},
			Rules:           []gwv1.HTTPRouteRule{{Matches: prefix("/burst"), BackendRefs: []gwv1.HTTPBackendRef{backendRef("svc", 1)}}},
		},
	})
	var mu sync.Mutex
	var applies []time.Time
	var last *kube.Result
	p := &kube.Provider{
		Config:   config.Kubernetes{GatewayBind: "127.0.0.1"},
		REST:     waageCfg,
		CertDir:  t.TempDir(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Debounce: 100 * time.Millisecond,
		Apply: func(r *kube.Result) error {
			mu.Lock()
			defer mu.Unlock()
			applies = append(applies, time.Now())
			last = r
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan error, 1)
	done := make(chan struct{})
	go func() { p.Run(ctx, ready); close(done) }()
	defer func() { cancel(); <-done }()
	if err, ok := <-ready; ok && err != nil {
		t.Fatal(err)
	}
	servers := func() int {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range last.Backends {
			if b.Name == ns+"/svc:80" {
				return len(b.Servers)
			}
		}
		return -1
	}
	time.Sleep(500 * time.Millisecond) // the status writes of the first sync come back as events

	// One change: applied within a second.
	start := time.Now()
	es.Endpoints = endpoints(backendIPs[:2], nil)
	es, err := core.DiscoveryV1().EndpointSlices(ns).Update(context.Background(), es, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for servers() != 2 {
		if time.Since(start) > time.Second {
			t.Fatalf("the change was not applied within a second (%d servers)", servers())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("one change applied after %v", time.Since(start).Round(time.Millisecond))

	// A burst of 20 changes: a few reloads, and the last state wins.
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	before := len(applies)
	mu.Unlock()
	for i := range 20 {
		es.Endpoints = endpoints(backendIPs[:1+i%3], nil)
		if es, err = core.DiscoveryV1().EndpointSlices(ns).Update(context.Background(), es, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := 1 + 19%3
	eventually(t, "the burst's last state", func() error {
		if n := servers(); n != want {
			return fmt.Errorf("%d servers, want %d", n, want)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	n := len(applies) - before
	mu.Unlock()
	t.Logf("20 changes made %d reloads", n)
	if n > 5 {
		t.Errorf("20 changes made %d reloads, want a few", n)
	}
}

// TestE2EStatusWriterLease runs two replicas: both apply, one (the Lease holder) writes status;
// when it stops, the other takes the Lease over and writes status from then on.
func TestE2EStatusWriterLease(t *testing.T) {
	needCluster(t)
	gatewaySetup(t)
	const ns = "lease"
	namespace(t, ns)
	makeService(t, ns, "svc", backendIPs[0])
	create(t, gw.GatewayV1().HTTPRoutes(ns).Create, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "r"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: parentRef()},
			Rules:           []gwv1.HTTPRouteRule{{Matches: prefix("/lease"), BackendRefs: []gwv1.HTTPBackendRef{backendRef("svc", 1)}}},
		},
	})
	type replica struct {
		applies atomic.Int64
		cancel  func()
		done    chan struct{}
	}
	start := func(id string) *replica {
		r := &replica{done: make(chan struct{})}
		rc := rest.CopyConfig(waageCfg)
		rc.UserAgent = "waage-" + id // the field manager of what it writes
		p := &kube.Provider{
			Config:         config.Kubernetes{GatewayBind: "127.0.0.1"},
			REST:           rc,
			CertDir:        t.TempDir(),
			Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
			LeaseNamespace: "waage",
			Identity:       id,
			Apply:          func(*kube.Result) error { r.applies.Add(1); return nil },
		}
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		go func() { p.Run(ctx, nil); close(r.done) }()
		t.Cleanup(func() { cancel(); <-r.done })
		return r
	}
	replicas := map[string]*replica{"a": start("a"), "b": start("b")}
	ctx := context.Background()
	// statusWriters returns the field managers of the route's status, and its parents' conditions'
	// observed generation.
	statusWriters := func() (map[string]bool, int64, int64, error) {
		r, err := gw.GatewayV1().HTTPRoutes(ns).Get(ctx, "r", metav1.GetOptions{})
		if err != nil {
			return nil, 0, 0, err
		}
		managers := map[string]bool{}
		for _, mf := range r.ManagedFields {
			if mf.Subresource == "status" {
				managers[mf.Manager] = true
			}
		}
		var observed int64
		if len(r.Status.Parents) == 1 {
			if c := meta.FindStatusCondition(r.Status.Parents[0].Conditions, "Accepted"); c != nil {
				observed = c.ObservedGeneration
			}
		}
		return managers, observed, r.Generation, nil
	}
	var holder string
	eventually(t, "one replica holds the Lease and writes status", func() error {
		l, err := core.CoordinationV1().Leases("waage").Get(ctx, kube.LeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || replicas[*l.Spec.HolderIdentity] == nil {
			return fmt.Errorf("holder = %v", l.Spec.HolderIdentity)
		}
		holder = *l.Spec.HolderIdentity
		managers, observed, gen, err := statusWriters()
		if err != nil {
			return err
		}
		if observed != gen || len(managers) != 1 || !managers["waage-"+holder] {
			return fmt.Errorf("status written by %v for generation %d of %d, want only waage-%s", managers, observed, gen, holder)
		}
		return nil
	})
	for id, r := range replicas {
		if r.applies.Load() == 0 {
			t.Errorf("replica %s applied nothing; every replica serves", id)
		}
	}
	other := map[string]string{"a": "b", "b": "a"}[holder]
	replicas[holder].cancel() // stops and releases the Lease
	<-replicas[holder].done

	r, err := gw.GatewayV1().HTTPRoutes(ns).Get(ctx, "r", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Spec.Hostnames = []gwv1.Hostname{"lease.example.com"} // a new generation to report on
	if _, err := gw.GatewayV1().HTTPRoutes(ns).Update(ctx, r, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other replica takes over", func() error {
		managers, observed, gen, err := statusWriters()
		if err != nil {
			return err
		}
		if observed != gen || !managers["waage-"+other] {
			return fmt.Errorf("status by %v for generation %d of %d, want waage-%s's", managers, observed, gen, other)
		}
		return nil
	})
}
