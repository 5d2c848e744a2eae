package config

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
)

// Etcd makes this node one of a cluster of waage nodes that share their configuration and admin
// state through etcd (internal/cluster, docs/cluster.md). With it, the file holds what is the
// node's own (this section, admin, log, vrrp, bgp, kubernetes), and the frontends and backends
// come from the configuration pushed to etcd with `waage config push`.
type Etcd struct {
	// Endpoints are the etcd members' client addresses: host:port, or http:// or https:// URLs.
	Endpoints []string `yaml:"endpoints"`
	// Prefix is the key prefix of this cluster, so several clusters can share one etcd; default
	// /waage/. It always ends with a slash.
	Prefix string `yaml:"prefix"`
	// TLS authenticates to etcd: ca verifies the members, cert and key are this node's client
	// certificate. Absent: plaintext (unless an endpoint is an https:// URL, then the system
	// roots).
	TLS *EtcdTLS `yaml:"tls"`
	// NodeName names this node in the membership list; default the host name. Two nodes with
	// the same name would overwrite each other's entry.
	NodeName string `yaml:"node_name"`
	// StateDir keeps the last good cluster configuration, so a node that restarts while etcd is
	// unreachable serves what it served before; default /var/lib/waage.
	StateDir string `yaml:"state_dir"`
}

// EtcdTLS are the certificate files for etcd.
type EtcdTLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Etcd defaults.
const (
	DefaultEtcdPrefix   = "/waage/"
	DefaultEtcdStateDir = "/var/lib/waage"
)

// WithDefaults returns a copy of e with the documented defaults filled in and the prefix ending
// in a slash.
func (e Etcd) WithDefaults() Etcd {
	orDefault(&e.Prefix, DefaultEtcdPrefix)
	if !strings.HasSuffix(e.Prefix, "/") {
		e.Prefix += "/"
	}
	if e.NodeName == "" {
		e.NodeName, _ = os.Hostname()
	}
	orDefault(&e.StateDir, DefaultEtcdStateDir)
	return e
}

// ResolvePaths makes the relative paths of the section (certificates, state_dir) relative to dir,
// the directory of the configuration file.
func (e *Etcd) ResolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&e.StateDir)
	if e.TLS != nil {
		t := *e.TLS
		abs(&t.CA)
		abs(&t.Cert)
		abs(&t.Key)
		e.TLS = &t
	}
}

// nodeNamePattern is a node name: it is a key in etcd and a label in the API.
var nodeNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// ValidEtcdPrefix reports whether p can be a cluster's key prefix: absolute, without spaces or
// empty segments.
func ValidEtcdPrefix(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.Contains(p, "//") && !strings.ContainsAny(p, " \t\r\n") && len(p) <= 256
}

// ValidEtcdEndpoint reports whether ep is host:port or an http(s) URL with a host.
func ValidEtcdEndpoint(ep string) bool {
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
	}
	host, port, err := net.SplitHostPort(ep)
	return err == nil && host != "" && port != ""
}

// etcd checks the etcd section.
func (v *validator) etcd(e *Etcd) {
	if e == nil {
		return
	}
	const p = "etcd"
	if len(e.Endpoints) == 0 {
		v.errorf(p+".endpoints", "is required: the etcd members' addresses, such as [\"10.0.0.1:2379\"]")
	}
	for i, ep := range e.Endpoints {
		if !ValidEtcdEndpoint(ep) {
			v.errorf(indexPath(p+".endpoints", i), "invalid endpoint %q: want host:port or an http:// or https:// URL", ep)
		}
	}
	if e.Prefix != "" && !ValidEtcdPrefix(e.Prefix) {
		v.errorf(p+".prefix", "invalid prefix %q: want an absolute key path such as /waage/prod/", e.Prefix)
	}
	if e.NodeName != "" && (len(e.NodeName) > 63 || !nodeNamePattern.MatchString(e.NodeName)) {
		v.errorf(p+".node_name", "invalid node name %q: %s", e.NodeName, nameRule)
	}
	if t := e.TLS; t != nil && (t.Cert == "") != (t.Key == "") {
		v.errorf(p+".tls", "cert and key go together: give both or neither")
	}
}

// nodeLocalKeys are the top-level sections a node of a cluster takes from its own file, whatever
// the configuration pushed to etcd says: how it reaches etcd, its admin listener and log, and
// what differs per node by nature (VRRP priorities, the BGP router ID, the Kubernetes provider).
var nodeLocalKeys = []string{"etcd", "admin", "log", "vrrp", "bgp", "kubernetes"}

// NodeLocalKeys lists the sections MergeCluster takes from the node's own file.
func NodeLocalKeys() []string { return append([]string(nil), nodeLocalKeys...) }

// MergeCluster returns the configuration a node of a cluster runs: the cluster's configuration
// (frontends, backends and the rest, from etcd) with the node-local sections of the node's own
// file. Neither argument is changed; errors of the result name the cluster's source.
func MergeCluster(cluster, local *Config) *Config {
	out := *cluster
	dst, src := reflect.ValueOf(&out).Elem(), reflect.ValueOf(local).Elem()
	for i := range dst.NumField() {
		tag, _, _ := strings.Cut(dst.Type().Field(i).Tag.Get("yaml"), ",")
		for _, k := range nodeLocalKeys {
			if tag == k {
				dst.Field(i).Set(src.Field(i))
			}
		}
	}
	return &out
}

// PushedNodeLocal lists the node-local sections that a configuration meant for a cluster sets:
// nodes ignore them there (each takes them from its own file), which `waage config push` says.
func PushedNodeLocal(cfg *Config) []string {
	var out []string
	v := reflect.ValueOf(cfg).Elem()
	for i := range v.NumField() {
		tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		for _, k := range nodeLocalKeys {
			if tag == k && !v.Field(i).IsZero() && !isDefaultSection(k, v.Field(i)) {
				out = append(out, k)
			}
		}
	}
	return out
}

// isDefaultSection reports whether a section holds only what ApplyDefaults fills in (log does:
// a file without log: still has its defaults).
func isDefaultSection(key string, f reflect.Value) bool {
	if key != "log" {
		return false
	}
	var c Config
	c.ApplyDefaults()
	return reflect.DeepEqual(f.Interface(), c.Log)
}

// ParseAt is Parse followed by what Load does for a file in dir: relative paths in the
// configuration (certificates, keys, CA bundles, ACME storage) resolve against dir. The cluster
// configuration from etcd has no directory of its own; a node resolves its paths against the
// directory of its own file.
func ParseAt(file string, data []byte, dir string, lookupEnv func(string) (string, bool)) (*Config, error) {
	cfg, err := Parse(file, data, lookupEnv)
	if err != nil {
		return nil, err
	}
	cfg.resolvePaths(dir)
	return cfg, nil
}
