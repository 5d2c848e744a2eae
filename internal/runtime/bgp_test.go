package runtime

import (
	"testing"
	"time"

	"github.com/waage/waage/internal/bgp"
	"github.com/waage/waage/internal/config"
)

// TestBGPNoFrontendsNoRoute: a configuration with a bgp section but no frontends (a node of a
// cluster that has no cluster configuration yet) does not announce: nothing would answer on the
// virtual IP. The first configuration with a frontend announces.
func TestBGPNoFrontendsNoRoute(t *testing.T) {
	const node = `log: {access: "off"}
bgp:
  local_as: 65001
  router_id: 10.250.1.2
  peers: [{address: 127.0.0.1, as: 65000, port: 1, hold_time: 3s, keepalive: 1s}]
  announce: ["10.250.100.1/32"]
`
	rt := startWaage(t, node)
	status := func() bgp.Status {
		st, ok := rt.BGPStatus()
		if !ok {
			t.Fatal("no BGP speaker")
		}
		return st
	}
	time.Sleep(300 * time.Millisecond) // a few of the speaker's decisions
	if st := status(); st.Announcing || st.Reason != bgp.ReasonNotReady {
		t.Errorf("without frontends: announcing %v, reason %q", st.Announcing, st.Reason)
	}

	cfg, err := config.Parse("e2e.yaml", []byte(node+`frontends:
  - {name: tcp, mode: tcp, listen: ["127.0.0.1:0"], backend: b}
backends:
  - name: b
    servers: [{name: s1, address: "127.0.0.1:9"}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for st := status(); !st.Announcing || st.Reason != bgp.ReasonServing; st = status() {
		if time.Now().After(deadline) {
			t.Fatalf("with a frontend: announcing %v, reason %q", st.Announcing, st.Reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
