package runtime

import (
	"fmt"
	"net"
	"testing"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

func apply(t *testing.T, rt *Runtime, yamlText string) {
	t.Helper()
	cfg, err := config.Parse("reload.yaml", []byte("log: {access: \"off\"}\n"+yamlText), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Apply(cfg); err != nil {
		t.Fatal(err)
	}
}

// TestReloadAppliesChangedServerSettings: a weight or state the file changes applies on reload;
// what the file left alone keeps the value an operator set at runtime.
func TestReloadAppliesChangedServerSettings(t *testing.T) {
	bs := startDemo(t, "A", "B")
	conf := func(stateB string, weightA int) string {
		return fmt.Sprintf(`frontends:
  - {name: web, listen: ["127.0.0.1:0"], default_backend: b}
backends:
  - name: b
    servers:
      - {name: a, address: %q, weight: %d}
      - {name: b, address: %q, state: %s}
`, bs[0].Addr, weightA, bs[1].Addr, stateB)
	}
	rt := startWaage(t, conf("ready", 1))
	apply(t, rt, conf("maintenance", 1))
	if st := rt.Server("b", "b").State(); st != backend.Maintenance {
		t.Fatalf("state after reload to maintenance: %v", st)
	}
	// The operator brings it back; a reload that does not touch it keeps that.
	rt.Server("b", "b").SetState(backend.Ready)
	apply(t, rt, conf("maintenance", 5))
	if st := rt.Server("b", "b").State(); st != backend.Ready {
		t.Errorf("state after an unrelated reload: %v, want the operator's ready", st)
	}
	if w := rt.Server("b", "a").Weight(); w != 5 {
		t.Errorf("weight after reload: %d, want 5", w)
	}
	rc := dialRaw(t, feAddr(t, rt, "web"))
	for i := 0; i < 12; i++ {
		if resp, _ := rc.mustDo(t, get("/", "r.test")); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// TestReloadMovesListener: an address that moves to another frontend, or a frontend renamed, keeps
// its socket (no refused connections, no "address already in use").
func TestReloadMovesListener(t *testing.T) {
	bs := startDemo(t, "A", "B")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := func(fe, be string) string {
		return fmt.Sprintf(`frontends:
  - {name: %s, listen: [%q], default_backend: %s}
backends:
  - {name: a, servers: [{name: s, address: %q}]}
  - {name: b, servers: [{name: s, address: %q}]}
`, fe, addr, be, bs[0].Addr, bs[1].Addr)
	}
	rt := startWaage(t, conf("one", "a"))
	rc := dialRaw(t, addr)
	if resp, _ := rc.mustDo(t, get("/", "m.test")); resp.Header.Get("X-Served-By") != "A" {
		t.Fatalf("before: %q", resp.Header.Get("X-Served-By"))
	}
	for i, step := range []struct{ fe, be, want string }{{"two", "b", "B"}, {"three", "a", "A"}} {
		apply(t, rt, conf(step.fe, step.be))
		if got := rt.Addrs(step.fe); len(got) != 1 || got[0].String() != addr {
			t.Fatalf("step %d: frontend %s listens on %v, want %s", i, step.fe, got, addr)
		}
		resp, _ := dialRaw(t, addr).mustDo(t, get("/", "m.test"))
		if resp.Header.Get("X-Served-By") != step.want {
			t.Errorf("step %d: new connection served by %q, want %s", i, resp.Header.Get("X-Served-By"), step.want)
		}
	}
}
