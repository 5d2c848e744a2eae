package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func sec(n int) Duration { return Duration(time.Duration(n) * time.Second) }

func TestLoadFull(t *testing.T) {
	t.Setenv("WAAGE_ADMIN_TOKEN", "s3cret")
	got, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		File:            "testdata/full.yaml",
		Admin:           Admin{Listen: "127.0.0.1:9900", Token: "s3cret"},
		ShutdownTimeout: sec(30),
		Log:             Log{Level: "debug", Format: "json", Access: "/var/log/waage/access.log", AccessFormat: "json"},
		Frontends: []Frontend{
			{
				Name:   "web",
				Mode:   "http",
				Listen: []string{"127.0.0.1:8080", "[::1]:8080"},
				Routes: []Route{
					{
						Name: "api",
						Match: Match{
							Host:       StringList{"api.example.com"},
							PathPrefix: "/api/",
							PathRegex:  "^/v[0-9]+/",
							Methods:    []string{"GET", "POST"},
							Headers:    StringMap{{"X-Canary", "true"}, {"X-Env", "~^(staging|prod)$"}},
							Cookies:    StringMap{{"beta", "1"}},
							UserAgent:  "~(?i)mobile",
							Query:      StringMap{{"debug", "1"}},
							Source:     []string{"10.0.0.0/8", "2001:db8::1"},
						},
						Backend:     "api",
						StripPrefix: "/api",
						RequestHeaders: HeaderOps{
							Set:    StringMap{{"Host", "internal.example.com"}, {"X-Forwarded-Proto", "https"}},
							Add:    StringMap{{"Via", "waage"}},
							Remove: []string{"X-Debug"},
						},
						ResponseHeaders: HeaderOps{Remove: []string{"Server"}},
					},
					{
						Name:    "route1",
						Match:   Match{Host: StringList{"*.example.org", "example.org"}},
						Backend: "web",
					},
				},
				DefaultBackend: "web",
				Timeouts:       FrontendTimeouts{ClientHeader: sec(5), ClientIdle: sec(60), Tunnel: sec(3600)},
			},
			{
				Name: "imap", Mode: "tcp", Listen: []string{"127.0.0.1:1143"}, Backend: "imap",
				Timeouts: FrontendTimeouts{ClientHeader: sec(10), ClientIdle: sec(60), Tunnel: sec(3600)},
			},
			{
				Name: "wireguard", Mode: "udp", Listen: []string{"127.0.0.1:51820"}, Backend: "wg", UDP: UDPOptions{MaxFlows: 65536},
				Timeouts: FrontendTimeouts{ClientHeader: sec(10), ClientIdle: sec(60), Tunnel: sec(3600)},
			},
		},
		Backends: []Backend{
			{
				Name:      "web",
				Algorithm: "weighted_round_robin",
				Servers: []Server{
					{Name: "s1", Address: "127.0.0.1:9001", Weight: ptr(1), State: "ready"},
					{Name: "s2", Address: "127.0.0.1:9002", Weight: ptr(2), State: "drain"},
					{Name: "s3", Address: "127.0.0.1:9003", Weight: ptr(1), State: "ready", Backup: true, HealthCheck: &HealthCheck{Port: 9903}},
				},
				Sticky:   &Sticky{Cookie: "WAAGE_SRV"},
				Timeouts: BackendTimeouts{Connect: sec(2), Response: sec(60)},
				Pool:     Pool{MaxIdle: -1, IdleTimeout: sec(30)},
				HealthCheck: &HealthCheck{
					Type: "http", Path: "/healthz", Method: "GET", ExpectStatus: StringList{"200"},
					Interval: sec(2), Timeout: sec(1), Rise: 2, Fall: 3, Initial: "up",
				},
				OutlierDetection: OutlierDetection{
					ConsecutiveFailures: ptr(5), Consecutive5xx: 10, BaseEjectionTime: sec(30),
					MaxEjectionTime: sec(300), MaxEjectionPercent: ptr(0),
				},
				Retry:     Retry{Attempts: 3, OnStatus: []int{502, 503}, Budget: RetryBudget{Percent: ptr(0), MinPerSecond: ptr(10)}},
				Queue:     defaultQueue(),
				SlowStart: sec(30),
			},
			{
				Name:      "api",
				Algorithm: "hash",
				HashKey:   "uri",
				Servers: []Server{
					{Name: "[::1]:9101", Address: "[::1]:9101", Weight: ptr(1), State: "ready"},
					{Name: "api-1.internal:9102", Address: "api-1.internal:9102", Weight: ptr(0), State: "maintenance"},
				},
				Timeouts:         BackendTimeouts{Connect: sec(5), Response: sec(60)},
				Pool:             Pool{MaxIdle: 256, IdleTimeout: sec(30)},
				OutlierDetection: defaultOutlier(),
				Retry:            defaultRetry(),
				Queue:            defaultQueue(),
			},
			{
				Name:             "imap",
				Algorithm:        "round_robin",
				Servers:          []Server{{Name: "127.0.0.1:143", Address: "127.0.0.1:143", Weight: ptr(1), State: "ready"}},
				Timeouts:         BackendTimeouts{Connect: sec(5), Response: sec(60)},
				Pool:             Pool{MaxIdle: 256, IdleTimeout: sec(30)},
				OutlierDetection: defaultOutlier(),
				Retry:            defaultRetry(),
				Queue:            defaultQueue(),
			},
			{
				Name:             "wg",
				Algorithm:        "source_ip_hash",
				Servers:          []Server{{Name: "127.0.0.1:51821", Address: "127.0.0.1:51821", Weight: ptr(1), State: "ready"}},
				Timeouts:         BackendTimeouts{Connect: sec(5), Response: sec(60)},
				Pool:             Pool{MaxIdle: 256, IdleTimeout: sec(30)},
				OutlierDetection: defaultOutlier(),
				Retry:            defaultRetry(),
				Queue:            defaultQueue(),
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load mismatch\n got: %+v\nwant: %+v", got, want)
	}
}

func defaultOutlier() OutlierDetection {
	return OutlierDetection{ConsecutiveFailures: ptr(5), BaseEjectionTime: Duration(30 * time.Second),
		MaxEjectionTime: Duration(5 * time.Minute), MaxEjectionPercent: ptr(50)}
}

func defaultQueue() Queue { return Queue{Size: 1024, Timeout: Duration(5 * time.Second)} }

func defaultRetry() Retry {
	return Retry{Attempts: 3, Budget: RetryBudget{Percent: ptr(20), MinPerSecond: ptr(10)}}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: got %v, want an error wrapping os.ErrNotExist", err)
	}
	if !strings.HasPrefix(err.Error(), "load config: ") {
		t.Errorf("error %q lacks the context prefix", err)
	}
}

// TestLoadReportsAllErrors is the "all errors at once" promise: five unrelated problems in one
// file, one run, five errors, in file order.
func TestLoadReportsAllErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "waage.yaml")
	data := `log:
  level: loud
frontends:
  - name: web
    listen: ["127.0.0.1:8080"]
    routes:
      - match: {path_regex: "(", methods: [get]}
        backend: api
backends:
  - name: web
    servers:
      - {address: "127.0.0.1:9001", wieght: 2}
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Load: got %v, want an ErrorList", err)
	}
	want := []string{
		path + `:2:10: log.level: invalid value "loud" (valid: debug, info, warn, error)`,
		path + ":7:29: frontends[0].routes[0].match.path_regex: error parsing regexp: missing closing ): `(`",
		path + `:7:44: frontends[0].routes[0].match.methods[0]: method "get" must be upper case (GET)`,
		path + `:8:18: frontends[0].routes[0].backend: backend "api" is not defined`,
		path + `:12:37: backends[0].servers[0]: unknown key "wieght" (valid: name, address, weight, state, backup, health_check)`,
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var single *Error
	if !errors.As(err, &single) || single.Line != 2 || single.Path != "log.level" {
		t.Errorf("errors.As(*Error) = %+v, want the first problem", single)
	}
}

func TestEmptyFileGetsDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
	}{
		{name: "empty", data: ""},
		{name: "comments only", data: "# nothing yet\n\n   # still nothing\n"},
		{name: "document marker", data: "---\n"},
		{name: "explicit nulls", data: "admin:\nlog: ~\nfrontends:\nbackends: null\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("w.yaml", []byte(tc.data), nil)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := &Config{File: "w.yaml", Log: Log{Level: "info", Format: "text", Access: "stdout", AccessFormat: "combined"}, ShutdownTimeout: sec(30)}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestApplyDefaultsKeepsExplicitValues(t *testing.T) {
	got := mustParse(t, `
frontends:
  - {name: f, listen: [":0"], timeouts: {client_idle: 2m}, routes: [{name: r, backend: b}, {backend: b}]}
backends:
  - name: b
    algorithm: hash
    hash_key: "header:X-User"
    pool: {max_idle: 0, idle_timeout: 1s}
    timeouts: {response: 1h}
    servers: [{name: one, address: "h:1", weight: 0, state: drain}]
`)
	f, b := got.Frontends[0], got.Backends[0]
	if f.Timeouts.ClientIdle != Duration(2*time.Minute) || f.Timeouts.ClientHeader != sec(10) {
		t.Errorf("frontend timeouts = %+v", f.Timeouts)
	}
	if f.Routes[0].Name != "r" || f.Routes[1].Name != "route1" {
		t.Errorf("route names = %q, %q; want r, route1", f.Routes[0].Name, f.Routes[1].Name)
	}
	if b.HashKey != "header:X-User" || b.Pool != (Pool{MaxIdle: 256, IdleTimeout: sec(1)}) {
		t.Errorf("backend = %+v", b)
	}
	if b.Timeouts != (BackendTimeouts{Connect: sec(5), Response: Duration(time.Hour)}) {
		t.Errorf("backend timeouts = %+v", b.Timeouts)
	}
	if s := b.Servers[0]; s.Name != "one" || s.WeightOr(1) != 0 || s.State != "drain" {
		t.Errorf("server = %+v", s)
	}
}

func TestApplyDefaultsIdempotent(t *testing.T) {
	t.Setenv("WAAGE_ADMIN_TOKEN", "x")
	cfg, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	again := clone(cfg)
	again.ApplyDefaults()
	if !reflect.DeepEqual(cfg, again) {
		t.Errorf("second ApplyDefaults changed the config:\n%+v\n%+v", cfg, again)
	}
	if errs := validate(again, "", nil); len(errs) > 0 {
		t.Errorf("defaulted config does not validate: %v", errs)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  Error
		want string
	}{
		{name: "everything", err: Error{File: "w.yaml", Line: 3, Col: 7, Path: "log.level", Msg: "bad"}, want: "w.yaml:3:7: log.level: bad"},
		{name: "no column", err: Error{File: "w.yaml", Line: 3, Msg: "invalid YAML: x"}, want: "w.yaml:3: invalid YAML: x"},
		{name: "no position", err: Error{File: "w.yaml", Path: "admin.token", Msg: "bad"}, want: "w.yaml: admin.token: bad"},
		{name: "no file", err: Error{Line: 1, Col: 2, Path: "p", Msg: "bad"}, want: "1:2: p: bad"},
		{name: "message only", err: Error{Msg: "bad"}, want: "bad"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidateProgrammaticConfig(t *testing.T) {
	// A Config built in code (no source positions) is validated by the same rules; errors then
	// have no line and column.
	c := &Config{Backends: []Backend{{Name: "b", Timeouts: BackendTimeouts{Connect: -1}, Pool: Pool{MaxIdle: -2}}}}
	got := validate(c, "", nil).Error()
	want := "backends[0].timeouts.connect: must be greater than 0\n" +
		"backends[0].pool.max_idle: must be -1 (no pooling), 0 (default) or more"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func mustParse(t *testing.T, data string) *Config {
	t.Helper()
	cfg, err := Parse("t.yaml", []byte(data), nil)
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return cfg
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "waage.yaml")
	data := `frontends:
  - {name: s, mode: tcp, listen: ["127.0.0.1:0"], backend: b, tls: {certificates: [{cert: certs/a.pem, key: /abs/a.key}]}}
backends:
  - name: b
    health_check: {type: http, tls: {ca: ca.pem}}
    servers: [{address: "127.0.0.1:9", health_check: {tls: {cert: c.pem, key: c.key}}}]
`
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Frontends[0].TLS.Certificates[0]
	if c.Cert != filepath.Join(dir, "certs/a.pem") || c.Key != "/abs/a.key" {
		t.Errorf("certificate paths %q %q", c.Cert, c.Key)
	}
	if ca := cfg.Backends[0].HealthCheck.TLS.CA; ca != filepath.Join(dir, "ca.pem") {
		t.Errorf("ca %q", ca)
	}
	if k := cfg.Backends[0].Servers[0].HealthCheck.TLS.Key; k != filepath.Join(dir, "c.key") {
		t.Errorf("server check key %q", k)
	}
}

// TestLoadResolvesTLSPaths: the files of a terminating frontend (client CA, ACME storage and CA)
// are relative to the configuration file, and ACME storage defaults to "acme" beside it, so
// the certificate store and the ACME client find them whatever directory waage started in.
func TestLoadResolvesTLSPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "waage.yaml")
	data := `frontends:
  - name: a
    mode: tcp
    listen: ["127.0.0.1:0"]
    backend: b
    tls:
      certificates: [{cert: certs/a.pem, key: certs/a.key}]
      client_auth: require
      client_ca: ca/clients.pem
      acme: {directory: "https://acme.example/dir", domains: [a.example.com], ca: acme-ca.pem}
  - name: c
    mode: tcp
    listen: ["127.0.0.1:0"]
    backend: b
    tls:
      acme: {directory: "https://acme.example/dir", domains: [c.example.com], storage: /var/lib/waage/acme}
backends:
  - {name: b, servers: [{address: "127.0.0.1:9"}]}
`
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, c := cfg.Frontends[0].TLS, cfg.Frontends[1].TLS
	tests := []struct {
		name, got, want string
	}{
		{name: "certificate", got: a.Certificates[0].Cert, want: filepath.Join(dir, "certs/a.pem")},
		{name: "key", got: a.Certificates[0].Key, want: filepath.Join(dir, "certs/a.key")},
		{name: "client_ca", got: a.ClientCA, want: filepath.Join(dir, "ca/clients.pem")},
		{name: "acme storage default", got: a.ACME.Storage, want: filepath.Join(dir, "acme")},
		{name: "acme ca", got: a.ACME.CA, want: filepath.Join(dir, "acme-ca.pem")},
		{name: "acme storage absolute", got: c.ACME.Storage, want: "/var/lib/waage/acme"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	if !a.HTTP2Enabled() {
		t.Error("http2 is on unless set to false")
	}
}
