package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/waage/waage/internal/config"
)

// exampleDocs returns the YAML documents of a file in examples/kubernetes.
func exampleDocs(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "kubernetes", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(data), "\n---\n")
}

// TestExampleConfig checks that the waage.yaml of the example Deployment is a valid config with a
// kubernetes section.
func TestExampleConfig(t *testing.T) {
	for _, doc := range exampleDocs(t, "deployment.yaml") {
		var cm corev1.ConfigMap
		if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
			t.Fatal(err)
		}
		if cm.Kind != "ConfigMap" {
			continue
		}
		cfg, err := config.Parse("waage.yaml", []byte(cm.Data["waage.yaml"]), nil)
		if err != nil {
			t.Fatalf("the example's waage.yaml: %v", err)
		}
		if cfg.Kubernetes == nil || cfg.Kubernetes.StatusAddress == "" {
			t.Errorf("kubernetes section = %+v", cfg.Kubernetes)
		}
		return
	}
	t.Fatal("deployment.yaml has no ConfigMap")
}

// TestExampleGateway translates the example GatewayClass, Gateway and HTTPRoute (decoded strictly,
// so a misspelt field fails) with two Services beside them.
func TestExampleGateway(t *testing.T) {
	var objs Objects
	for _, doc := range exampleDocs(t, "gateway.yaml") {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatal(err)
		}
		var err error
		switch head.Kind {
		case "GatewayClass":
			o := &gwv1.GatewayClass{}
			err = yaml.UnmarshalStrict([]byte(doc), o)
			objs.GatewayClasses = append(objs.GatewayClasses, o)
		case "Gateway":
			o := &gwv1.Gateway{}
			err = yaml.UnmarshalStrict([]byte(doc), o)
			objs.Gateways = append(objs.Gateways, o)
		case "HTTPRoute":
			o := &gwv1.HTTPRoute{}
			err = yaml.UnmarshalStrict([]byte(doc), o)
			objs.HTTPRoutes = append(objs.HTTPRoutes, o)
		default:
			t.Fatalf("unexpected kind %q", head.Kind)
		}
		if err != nil {
			t.Fatalf("%s: %v", head.Kind, err)
		}
	}
	for _, s := range [][2]string{{"app-stable", "10.0.0.1"}, {"app-canary", "10.0.0.2"}} {
		svc, es := service("default", s[0], s[1])
		objs.Services = append(objs.Services, svc)
		objs.EndpointSlices = append(objs.EndpointSlices, es)
	}
	r := Translate(objs, Options{Kubernetes: config.Kubernetes{}.WithDefaults(), NotFoundAddress: "127.0.0.1:1"})
	f := frontend(t, r, "kubernetes/gateway-8080")
	if len(f.Routes) != 2 || f.Routes[0].Backend != "default/app-canary:80" || len(f.Routes[0].Match.Headers) != 1 {
		t.Fatalf("routes = %+v, want the header match first", f.Routes)
	}
	b := backendOf(t, r, f.Routes[1].Backend)
	weights := map[string]int{}
	for _, s := range b.Servers {
		weights[s.Address] = s.WeightOr(1)
	}
	if weights["10.0.0.1:8080"] != 9 || weights["10.0.0.2:8080"] != 1 {
		t.Errorf("weights = %v, want 9:1", weights)
	}
	for _, c := range r.Status.HTTPRoutes {
		for _, p := range c {
			for _, cd := range p.Conditions {
				if cd.Status != "True" {
					t.Errorf("condition %+v", cd)
				}
			}
		}
	}
}
