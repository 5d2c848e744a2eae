package config

import (
	"slices"
	"strings"
	"testing"
)

func TestEtcdSection(t *testing.T) {
	src := `etcd:
  endpoints: ["10.0.0.1:2379", "https://etcd.example.com:2379"]
  prefix: /waage/prod
  tls: {ca: ca.pem, cert: lb1.pem, key: lb1.key}
  node_name: lb1
admin: {listen: "127.0.0.1:9900"}
`
	cfg, err := ParseAt("e.yaml", []byte(src), "/etc/waage", nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	e := cfg.Etcd.WithDefaults()
	e.ResolvePaths("/etc/waage")
	if e.Prefix != "/waage/prod/" || e.StateDir != DefaultEtcdStateDir || e.NodeName != "lb1" || e.TLS.CA != "/etc/waage/ca.pem" || e.TLS.Key != "/etc/waage/lb1.key" {
		t.Errorf("with defaults: %+v %+v", e, e.TLS)
	}
	if cfg.Etcd.TLS.CA != "ca.pem" {
		t.Errorf("ResolvePaths changed the parsed config: %+v", cfg.Etcd.TLS)
	}
	if d := (Etcd{}).WithDefaults(); d.Prefix != DefaultEtcdPrefix || d.NodeName == "" {
		t.Errorf("defaults: %+v", d)
	}
}

func TestEtcdErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"no endpoints", "etcd:\n  prefix: /waage/\n", []string{"e.yaml:2:3: etcd.endpoints: is required"}},
		{"bad endpoint", "etcd:\n  endpoints: [\"10.0.0.1\", \"ftp://x:1\"]\n",
			[]string{"e.yaml:2:15: etcd.endpoints[0]: invalid endpoint", "e.yaml:2:27: etcd.endpoints[1]: invalid endpoint"}},
		{"prefix", "etcd:\n  endpoints: [\"a:1\"]\n  prefix: waage//x\n", []string{"e.yaml:3:11: etcd.prefix: invalid prefix"}},
		{"node name", "etcd:\n  endpoints: [\"a:1\"]\n  node_name: \"lb 1\"\n", []string{"e.yaml:3:14: etcd.node_name: invalid node name"}},
		{"cert without key", "etcd:\n  endpoints: [\"a:1\"]\n  tls: {cert: c.pem}\n", []string{"e.yaml:3:8: etcd.tls: cert and key go together"}},
		{"unknown key", "etcd:\n  endpoints: [\"a:1\"]\n  ttl: 5s\n", []string{`e.yaml:3:3: etcd: unknown key "ttl"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("e.yaml", []byte(tt.src), nil)
			list, ok := err.(ErrorList)
			if !ok || len(list) != len(tt.want) {
				t.Fatalf("errors = %v, want %q", err, tt.want)
			}
			for i, w := range tt.want {
				if got := list[i].Error(); !strings.HasPrefix(got, w) {
					t.Errorf("error %d = %q, want prefix %q", i, got, w)
				}
			}
		})
	}
}

// TestMergeCluster: a node runs the cluster's frontends and backends with its own etcd, admin,
// log and vrrp sections, whatever the pushed configuration says of them; a pushed configuration
// therefore cannot cut a node off from etcd.
func TestMergeCluster(t *testing.T) {
	local, err := Parse("lb1.yaml", []byte(`etcd: {endpoints: ["10.0.0.1:2379"], prefix: /waage/prod/}
admin: {listen: "127.0.0.1:9900", token: secret}
log: {level: debug}
frontends:
  - {name: bootstrap, listen: ["127.0.0.1:8081"], default_backend: b}
backends:
  - {name: b, servers: [{name: s, address: "127.0.0.1:1"}]}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := Parse("etcd:/waage/prod/config@7", []byte(`admin: {listen: "127.0.0.2:1"}
log: {level: error}
frontends:
  - {name: web, listen: ["127.0.0.1:8080"], default_backend: web}
backends:
  - {name: web, servers: [{name: s1, address: "127.0.0.1:9001"}]}
shutdown_timeout: 5s
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := PushedNodeLocal(cl); !slices.Equal(got, []string{"admin", "log"}) {
		t.Errorf("PushedNodeLocal = %v", got)
	}
	m := MergeCluster(cl, local)
	if m.Etcd == nil || m.Etcd.Prefix != "/waage/prod/" || m.Admin.Listen != "127.0.0.1:9900" || m.Admin.Token != "secret" || m.Log.Level != "debug" {
		t.Errorf("node-local sections: etcd %+v admin %+v log %+v", m.Etcd, m.Admin, m.Log)
	}
	if len(m.Frontends) != 1 || m.Frontends[0].Name != "web" || m.ShutdownTimeout.D().String() != "5s" || m.File != cl.File {
		t.Errorf("cluster sections: %+v %v %s", m.Frontends, m.ShutdownTimeout, m.File)
	}
	if cl.Admin.Listen != "127.0.0.2:1" || local.Frontends[0].Name != "bootstrap" {
		t.Errorf("MergeCluster changed its arguments")
	}
	if got := PushedNodeLocal(m); !slices.Contains(got, "etcd") {
		t.Errorf("PushedNodeLocal(merged) = %v", got)
	}
	keys := NodeLocalKeys()
	for _, k := range []string{"etcd", "admin", "log", "vrrp"} {
		if !slices.Contains(keys, k) {
			t.Errorf("NodeLocalKeys lacks %s", k)
		}
	}
}
