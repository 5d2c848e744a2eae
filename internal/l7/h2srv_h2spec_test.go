package l7

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	h2specconfig "github.com/summerwind/h2spec/config"
	"github.com/summerwind/h2spec/generic"
	"github.com/summerwind/h2spec/hpack"
	h2spechttp2 "github.com/summerwind/h2spec/http2"
	"github.com/summerwind/h2spec/spec"

	"github.com/waage/waage/internal/config"
)

// TestH2SpecFrontend runs the h2spec conformance suite against waage's frontends (h2c and TLS),
// with their streams proxied to an HTTP/1.1 server: the HTTP/2 server and the way waage answers
// through it must both conform.
func TestH2SpecFrontend(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec takes a while")
	}
	for _, useTLS := range []bool{false, true} {
		name := "h2c"
		var addr string
		if useTLS {
			name = "tls"
			addr, _ = startTLSFront(t, config.Backend{}, h1Backend(t, "s1"))
		} else {
			addr = startH2Front(t, config.Backend{}, h1Backend(t, "s1")).addr
		}
		t.Run(name, func(t *testing.T) {
			_, port, _ := net.SplitHostPort(addr)
			p, _ := strconv.Atoi(port)
			cfg := &h2specconfig.Config{Host: "127.0.0.1", Port: p, Path: "/", Timeout: 2 * time.Second,
				MaxHeaderLen: 4000, TLS: useTLS, Insecure: true}
			groups := []*spec.TestGroup{generic.Spec(), h2spechttp2.Spec(), hpack.Spec()}
			out, err := os.CreateTemp(t.TempDir(), "h2spec")
			if err != nil {
				t.Fatal(err)
			}
			stdout := os.Stdout
			os.Stdout = out // h2spec reports on stdout
			for _, g := range groups {
				g.Test(cfg)
			}
			os.Stdout = stdout
			passed := 0
			var failed []string
			var walk func(g *spec.TestGroup)
			walk = func(g *spec.TestGroup) {
				for i, tc := range g.Tests {
					switch r := tc.Result; {
					case r == nil, r.Skipped:
					case r.Failed:
						failed = append(failed, g.ID()+"/"+strconv.Itoa(i+1)+" "+tc.Desc)
					default:
						passed++
					}
				}
				for _, sg := range g.Groups {
					walk(sg)
				}
			}
			for _, g := range groups {
				walk(g)
			}
			t.Logf("h2spec %s: %d passed, %d failed", name, passed, len(failed))
			if len(failed) > 0 || passed == 0 {
				report, _ := os.ReadFile(out.Name())
				t.Errorf("h2spec failures:\n%s\n\nreport:\n%s", strings.Join(failed, "\n"), report)
			}
		})
	}
}
