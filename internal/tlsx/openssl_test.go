package tlsx

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/waage/waage/internal/config"
)

// TestOpenSSL checks with openssl s_client, the tool docs/tls.md tells operators to check with:
// the chosen certificate verifies, TLS 1.3 is negotiated, and a session saved against one Store
// resumes against a second one built from the same configuration (a reload), for TLS 1.2 and 1.3.
func TestOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	ca := newCA(t, "openssl CA")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writeAtomic(t, caFile, ca.pem)
	cfg := &config.FrontendTLS{Certificates: []config.Certificate{
		ca.writePair(t, dir, "site", leafSpec{label: "site", names: []string{"a.example.com"}}),
	}}
	before := serve(t, newStore(t, cfg, nil).ServerConfig(nil))
	after := serve(t, newStore(t, cfg, nil).ServerConfig(nil))

	run := func(t *testing.T, addr string, args ...string) string {
		t.Helper()
		args = append([]string{"s_client", "-connect", addr, "-servername", "a.example.com",
			"-CAfile", caFile, "-verify_return_error"}, args...)
		cmd := exec.Command(openssl, args...)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, v := range []struct{ flag, name string }{{"-tls1_2", "TLSv1.2"}, {"-tls1_3", "TLSv1.3"}} {
		t.Run(v.name, func(t *testing.T) {
			sess := filepath.Join(dir, v.name+".sess")
			out := run(t, before, v.flag, "-sess_out", sess)
			for _, want := range []string{"Verify return code: 0 (ok)", "New, " + v.name} {
				if !strings.Contains(out, want) {
					t.Errorf("first session: no %q in\n%s", want, out)
				}
			}
			out = run(t, after, v.flag, "-sess_in", sess)
			if !strings.Contains(out, "Reused, "+v.name) {
				t.Errorf("session against the reloaded store not reused:\n%s", out)
			}
		})
	}
}
