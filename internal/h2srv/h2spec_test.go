package h2srv

import (
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/summerwind/h2spec/config"
	"github.com/summerwind/h2spec/generic"
	"github.com/summerwind/h2spec/hpack"
	h2spechttp2 "github.com/summerwind/h2spec/http2"
	"github.com/summerwind/h2spec/spec"
)

// specHandler is what h2spec's requests get: the body read, a short text answered.
func specHandler(s *Stream) {
	io.Copy(io.Discard, s.Request().Body)
	s.Header().Set("Content-Type", "text/plain")
	s.WriteHeader(200, false)
	s.Write([]byte("hello from h2srv\n"))
	s.Close(nil)
}

// TestH2Spec runs the whole h2spec conformance suite (generic, http2, hpack; 146 cases) against
// the server, over plaintext and TLS, and fails on any failed case.
func TestH2Spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec takes a while")
	}
	for _, useTLS := range []bool{false, true} {
		name := "h2c"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			ts := startServer(t, nil, HandlerFunc(specHandler), useTLS)
			_, port, _ := net.SplitHostPort(ts.addr)
			p, _ := strconv.Atoi(port)
			cfg := &config.Config{
				Host:         "127.0.0.1",
				Port:         p,
				Path:         "/",
				Timeout:      2 * time.Second,
				MaxHeaderLen: 4000,
				TLS:          useTLS,
				Insecure:     true,
			}
			groups := []*spec.TestGroup{generic.Spec(), h2spechttp2.Spec(), hpack.Spec()}
			// h2spec reports on stdout; keep it for the failure message.
			out, err := os.CreateTemp(t.TempDir(), "h2spec")
			if err != nil {
				t.Fatal(err)
			}
			stdout := os.Stdout
			os.Stdout = out
			for _, g := range groups {
				g.Test(cfg)
			}
			os.Stdout = stdout
			passed, failed, skipped := 0, 0, 0
			var failures []string
			var walk func(g *spec.TestGroup)
			walk = func(g *spec.TestGroup) {
				for i, tc := range g.Tests {
					switch r := tc.Result; {
					case r == nil:
					case r.Failed:
						failed++
						failures = append(failures, g.ID()+"/"+strconv.Itoa(i+1)+" "+tc.Desc+": "+errString(r.Error))
					case r.Skipped:
						skipped++
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
			t.Logf("h2spec %s: %d passed, %d failed, %d skipped", name, passed, failed, skipped)
			if failed > 0 || passed == 0 {
				report, _ := os.ReadFile(out.Name())
				t.Errorf("h2spec failures:\n%s\n\nreport:\n%s", strings.Join(failures, "\n"), report)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return strings.ReplaceAll(err.Error(), "\n", " | ")
}
