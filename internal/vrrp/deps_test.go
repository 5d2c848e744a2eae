package vrrp

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence keeps the VRRP package free of the data path: it must not import net/http
// (nor anything that does), nor any other package of this module, so that the virtual IPs stay
// up whatever state the proxy code is in and the state machine can be reasoned about alone.
func TestDependencyFence(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const module = "github.com/waage/waage/"
	deps := strings.Fields(string(out))
	if len(deps) < 5 {
		t.Fatalf("go list found only %v; the fence would prove nothing", deps)
	}
	allowed := []string{"golang.org/x/net/", "golang.org/x/sys/", "github.com/vishvananda/"}
	for _, dep := range deps {
		switch {
		case dep == "net/http" || strings.HasPrefix(dep, "net/http/"):
			t.Errorf("imports %s", dep)
		case strings.HasPrefix(dep, module) && dep != module+"internal/vrrp":
			t.Errorf("imports %s: the VRRP package stands alone", dep)
		case !strings.HasPrefix(dep, module) && strings.Contains(strings.SplitN(dep, "/", 2)[0], "."):
			ok := false
			for _, a := range allowed {
				ok = ok || strings.HasPrefix(dep, a)
			}
			if !ok {
				t.Errorf("imports %s: only x/net, x/sys and netlink", dep)
			}
		}
	}
}
