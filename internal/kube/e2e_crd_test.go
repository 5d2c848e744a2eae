package kube_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/kube"
)

// TestE2ELateCRD: a route kind whose CRD is installed after waage started is watched once it is
// there, without a restart: the TCPRoute CRD is removed, a provider starts without it, the CRD
// comes back, and a TCPRoute created then is served.
func TestE2ELateCRD(t *testing.T) {
	needCluster(t)
	gatewaySetup(t)
	ctx := context.Background()
	ext := apiextensions.NewForConfigOrDie(restCfg)
	const crdName = "tcproutes.gateway.networking.k8s.io"
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "gateway.networking.k8s.io_tcproutes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	install := func() {
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, &crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	defer func() { // the other tests use TCPRoutes
		install()
		eventually(t, "the TCPRoute CRD served again", func() error { return served(t, "tcproutes", true) })
	}()
	if err := ext.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, crdName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	eventually(t, "the TCPRoute CRD gone", func() error {
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crdName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return served(t, "tcproutes", false)
	})

	const ns = "late-crd"
	namespace(t, ns)
	makeService(t, ns, "site", backendIPs[1])
	tcpPort := freePort()
	create(t, gw.GatewayV1().Gateways(ns).Create, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "tcp"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "waage", Listeners: []gwv1.Listener{
			{Name: "tcp", Port: gwv1.PortNumber(tcpPort), Protocol: gwv1.TCPProtocolType},
		}},
	})
	runProvider(t, &config.Config{}, config.Kubernetes{GatewayBind: "127.0.0.1"},
		func(p *kube.Provider) { p.DiscoveryInterval = 200 * time.Millisecond })

	install()
	eventually(t, "the TCPRoute CRD served", func() error { return served(t, "tcproutes", true) })
	eventually(t, "a TCPRoute created", func() error {
		_, err := gw.GatewayV1().TCPRoutes(ns).Create(ctx, &gwv1.TCPRoute{
			ObjectMeta: metav1.ObjectMeta{Name: "site"},
			Spec: gwv1.TCPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "tcp"}}},
				Rules:           []gwv1.TCPRouteRule{{BackendRefs: []gwv1.BackendRef{ref("site", 80, 1)}}},
			},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	eventually(t, "the TCPRoute served", expect(tcpPort, "/", backendIPs[1]))
}

// served reports (as an error when it is not so) whether the API server serves resource in the
// Gateway API's group now.
func served(t *testing.T, resource string, want bool) error {
	t.Helper()
	rl, err := core.Discovery().ServerResourcesForGroupVersion(gwv1.GroupVersion.String())
	if err != nil {
		return err
	}
	got := false
	for _, r := range rl.APIResources {
		got = got || r.Name == resource
	}
	if got != want {
		return fmt.Errorf("%s served: %v, want %v", resource, got, want)
	}
	return nil
}
