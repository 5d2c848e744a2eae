package balance

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence keeps this package protocol-free: it must not import net/http (nor
// anything that does), so the same algorithms serve L4 and L7 and the picker never grows a
// *http.Request parameter; and from this module it may import only internal/backend, since
// dependencies point downward.
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
	allowed := map[string]bool{
		module + "internal/balance": true,
		module + "internal/backend": true,
	}
	deps := strings.Fields(string(out))
	if len(deps) < 5 {
		t.Fatalf("go list found only %v; the fence would prove nothing", deps)
	}
	for _, dep := range deps {
		switch {
		case dep == "net/http" || strings.HasPrefix(dep, "net/http/"):
			t.Errorf("imports %s", dep)
		case strings.HasPrefix(dep, module) && !allowed[dep]:
			t.Errorf("imports %s: only internal/backend is below balance", dep)
		case !strings.HasPrefix(dep, module) && strings.Contains(strings.SplitN(dep, "/", 2)[0], "."):
			t.Errorf("imports %s: the standard library only", dep)
		}
	}
}
