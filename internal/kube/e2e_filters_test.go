package kube_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestE2ERedirectAndRewrite applies an HTTPRoute with a RequestRedirect and one with URLRewrite
// filters through the real API server (which defaults and validates them) and checks what clients
// and servers see.
func TestE2ERedirectAndRewrite(t *testing.T) {
	needCluster(t)
	waage(t)
	gatewaySetup(t)
	const ns = "filters"
	namespace(t, ns)
	makeService(t, ns, "app", backendIPs[0])
	create(t, gw.GatewayV1().HTTPRoutes(ns).Create, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "moved"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: parentRef()},
			Hostnames:       []gwv1.Hostname{"old.example.com"},
			Rules: []gwv1.HTTPRouteRule{{
				Matches: prefix("/shop"),
				Filters: []gwv1.HTTPRouteFilter{{
					Type: gwv1.HTTPRouteFilterRequestRedirect,
					RequestRedirect: &gwv1.HTTPRequestRedirectFilter{
						Scheme:     ptr("https"),
						Hostname:   ptr(gwv1.PreciseHostname("new.example.com")),
						Path:       &gwv1.HTTPPathModifier{Type: gwv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr("/store")},
						StatusCode: ptr(301),
					},
				}},
			}},
		},
	})
	create(t, gw.GatewayV1().HTTPRoutes(ns).Create, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "rewritten"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: parentRef()},
			Hostnames:       []gwv1.Hostname{"api.example.com"},
			Rules: []gwv1.HTTPRouteRule{
				{
					Matches: prefix("/v1"),
					Filters: []gwv1.HTTPRouteFilter{{
						Type: gwv1.HTTPRouteFilterURLRewrite,
						URLRewrite: &gwv1.HTTPURLRewriteFilter{
							Hostname: ptr(gwv1.PreciseHostname("internal.example.com")),
							Path:     &gwv1.HTTPPathModifier{Type: gwv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr("/api/v2")},
						},
					}},
					BackendRefs: []gwv1.HTTPBackendRef{backendRef("app", 1)},
				},
				{
					Matches: prefix("/legacy"),
					Filters: []gwv1.HTTPRouteFilter{{
						Type: gwv1.HTTPRouteFilterURLRewrite,
						URLRewrite: &gwv1.HTTPURLRewriteFilter{
							Path: &gwv1.HTTPPathModifier{Type: gwv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr("/index")},
						},
					}},
					BackendRefs: []gwv1.HTTPBackendRef{backendRef("app", 1)},
				},
			},
		},
	})

	noFollow := &http.Client{Timeout: client.Timeout, Transport: client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	eventually(t, "redirect", func() error {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(gwPort)+"/shop/cart?id=7", nil)
		req.Host = "old.example.com"
		resp, err := noFollow.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		// The scheme changed to https: its port (443) is left out of the Location.
		if want := "https://new.example.com/store/cart?id=7"; resp.StatusCode != 301 || resp.Header.Get("Location") != want {
			return fmt.Errorf("GET /shop/cart: %d Location %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
		return nil
	})

	seen := func(path, wantPath, wantHost string) func() error {
		return func() error {
			req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(gwPort)+path, nil)
			req.Host = "api.example.com"
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if p, h := resp.Header.Get("X-Path"), resp.Header.Get("X-Host"); resp.StatusCode != 200 || p != wantPath || h != wantHost {
				return fmt.Errorf("GET %s: %d, the server saw %q on %q, want %q on %q", path, resp.StatusCode, p, h, wantPath, wantHost)
			}
			return nil
		}
	}
	eventually(t, "prefix rewrite", seen("/v1/users", "/api/v2/users", "internal.example.com"))
	eventually(t, "prefix rewrite of the prefix itself", seen("/v1", "/api/v2", "internal.example.com"))
	eventually(t, "full path rewrite", seen("/legacy/anything/here", "/index", "api.example.com"))
	// /v1x is not under the path prefix /v1 (prefixes match whole path elements).
	eventually(t, "no match outside the prefix", func() error {
		st, _, err := get(gwPort, "/v1x", "Host", "api.example.com")
		if err != nil {
			return err
		}
		if st != 404 {
			return fmt.Errorf("GET /v1x: %d, want 404", st)
		}
		return nil
	})
}
