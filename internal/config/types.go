// Package config holds waage's YAML schema as Go types, the strict loader that turns a file into them,
// and the validation that reports every problem at once as file:line:col: field.path: message.
//
// The key names are the public interface (see docs/configuration.md): extend them, never rename them.
// Load applies the documented defaults, so code downstream sees concrete values and the admin API can
// show the effective configuration.
package config

import "time"

// Config is one whole waage configuration file.
type Config struct {
	Admin     Admin      `yaml:"admin"`
	Log       Log        `yaml:"log"`
	Frontends []Frontend `yaml:"frontends"`
	Backends  []Backend  `yaml:"backends"`
	// VRRP lists the VRRPv3 instances that keep virtual IPs on this balancer or its peer.
	VRRP []VRRP `yaml:"vrrp"`
	// BGP announces virtual IPs to routers for active/active balancing (bgp.go).
	BGP *BGP `yaml:"bgp"`
	// Kubernetes makes waage a Gateway API and Ingress controller (kubernetes.go).
	Kubernetes *Kubernetes `yaml:"kubernetes"`
	// Etcd joins this node to a cluster that shares its configuration and admin state through
	// etcd (etcd.go).
	Etcd *Etcd `yaml:"etcd"`
	// ShutdownTimeout bounds how long requests and connections in flight may take to finish on
	// SIGTERM/SIGINT or after a binary upgrade; default 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`

	// File is the path the configuration was loaded from; it prefixes error messages.
	File string `yaml:"-"`
}

// Admin configures the admin API, dashboard and metrics listener.
type Admin struct {
	// Listen is host:port; empty disables the admin listener.
	Listen string `yaml:"listen"`
	// Token is the bearer token required for changes.
	Token string `yaml:"token"`
}

// Log configures the process log and the access log.
type Log struct {
	Level        string `yaml:"level"`         // debug | info | warn | error; default info
	Format       string `yaml:"format"`        // text | json; default text
	Access       string `yaml:"access"`        // stdout | off | a file path; default stdout
	AccessFormat string `yaml:"access_format"` // combined | json; default combined
}

// Frontend is one set of listeners with one protocol mode.
type Frontend struct {
	Name   string   `yaml:"name"`
	Mode   string   `yaml:"mode"` // http (default) | tcp | udp
	Listen []string `yaml:"listen"`
	// Routes are tried in order; the first whose match holds wins.
	Routes []Route `yaml:"routes"`
	// DefaultBackend serves requests that no route matched; without it they get 404.
	DefaultBackend string `yaml:"default_backend"`
	// Backend is the single backend of a tcp or udp frontend without routes.
	Backend  string           `yaml:"backend"`
	Timeouts FrontendTimeouts `yaml:"timeouts"`
	// TLS terminates TLS here (mode tcp: the backend gets plaintext, as for SMTPS or IMAPS
	// offload). Absent on a tcp frontend with sni routes, the ClientHello is only peeked and the
	// connection passed through encrypted.
	TLS *FrontendTLS `yaml:"tls"`
	// ProxyProtocol makes the frontend read a PROXY protocol header (v1 or v2) from each
	// connection and use the client address it carries.
	ProxyProtocol *AcceptProxyProtocol `yaml:"proxy_protocol"`
	// UDP tunes a udp frontend's flow table.
	UDP UDPOptions `yaml:"udp"`
	// RedirectHTTPS makes a plaintext http frontend answer every request with 308 to the same
	// URL on https (ACME HTTP-01 challenges excepted).
	RedirectHTTPS bool `yaml:"redirect_https"`
	// HTTPSPort is the port of redirect_https's URLs; default 443 (left out of the URL).
	HTTPSPort int `yaml:"https_port"`
	// H2C serves HTTP/2 without TLS (prior knowledge) beside HTTP/1.1 on a plaintext http
	// frontend.
	H2C bool `yaml:"h2c"`
	// Limits protect against floods and slow clients (limits.go).
	Limits Limits `yaml:"limits"`
	// Access lists the sources served (allow) and refused (deny).
	Access Access `yaml:"access"`
	// Freebind binds the listen addresses even when no interface has them yet (IP_FREEBIND,
	// IPV6_FREEBIND; Linux): a VRRP virtual IP on a backup, or an address routed to this host
	// later. Traffic arrives once the address is local.
	Freebind bool `yaml:"freebind"`
}

// FrontendTLS is the certificate and protocol setup of a TLS-terminating frontend.
type FrontendTLS struct {
	// Certificates are PEM files; the one whose names match the client's SNI is served, the
	// first one when none matches or the client sent no SNI.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// Ciphers limits the TLS 1.2 cipher suites (Go's names, e.g.
	// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); default the forward-secret AEAD suites. TLS 1.3's
	// suites are all AEAD and not configurable.
	Ciphers []string `yaml:"ciphers"`
	// ClientAuth asks clients for a certificate: none (default) | optional | require. Verified
	// against ClientCA; the subject is passed to servers in X-Client-Cert-Subject.
	ClientAuth string `yaml:"client_auth"`
	// ClientCA is the PEM bundle that client certificates are verified with.
	ClientCA string `yaml:"client_ca"`
	// HTTP2 offers HTTP/2 by ALPN on an http frontend; default true.
	HTTP2 *bool `yaml:"http2"`
	// ACME obtains and renews certificates for its domains from an ACME CA.
	ACME *ACME `yaml:"acme"`
}

// ACME obtains certificates from an ACME (RFC 8555) certificate authority such as Let's Encrypt.
type ACME struct {
	// Directory is the CA's directory URL.
	Directory string `yaml:"directory"`
	// Email is the account's contact address.
	Email string `yaml:"email"`
	// Domains get one certificate together (the first is its subject).
	Domains []string `yaml:"domains"`
	// Storage is the directory for the account key and the certificates; default "acme" beside
	// the configuration file.
	Storage string `yaml:"storage"`
	// CA is a PEM bundle to verify the ACME server's HTTPS with (a private CA); default the
	// system roots.
	CA string `yaml:"ca"`
	// Challenges are tried in this order: http-01 and tls-alpn-01 (default both).
	Challenges []string `yaml:"challenges"`
	// RenewBefore renews a certificate this long before it expires; default a third of its
	// lifetime.
	RenewBefore Duration `yaml:"renew_before"`
}

// Certificate is a certificate chain and its private key, both PEM files.
type Certificate struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// AcceptProxyProtocol configures reading PROXY protocol headers on a frontend.
type AcceptProxyProtocol struct {
	// Trusted lists the CIDRs (or addresses) allowed to send a header: normally the balancer or
	// load balancer in front. A connection from anywhere else is closed at accept, and one from
	// a trusted source without a valid header is closed too.
	Trusted []string `yaml:"trusted"`
}

// UDPOptions tune a udp frontend.
type UDPOptions struct {
	// MaxFlows caps the flow table (one entry per client address); default 65536. A datagram
	// that would open a flow beyond it is dropped.
	MaxFlows int `yaml:"max_flows"`
	// PerPacket balances every datagram on its own rather than each flow, for stateless
	// request/response protocols such as DNS. Replies still find their client.
	PerPacket bool `yaml:"per_packet"`
}

// FrontendTimeouts bound how long waage waits for clients.
type FrontendTimeouts struct {
	// ClientHeader bounds reading one whole request head; default 10s. Exceeded: 408 and close.
	ClientHeader Duration `yaml:"client_header"`
	// ClientIdle bounds a keep-alive connection's wait for its next request, and the gaps while a
	// request body streams in; default 60s.
	ClientIdle Duration `yaml:"client_idle"`
	// Tunnel bounds inactivity (no byte either way) on upgraded connections such as WebSockets;
	// default 1h.
	Tunnel Duration `yaml:"tunnel"`
}

// Route sends matching requests to a backend and may rewrite them on the way.
type Route struct {
	Name    string `yaml:"name"`
	Match   Match  `yaml:"match"`
	Backend string `yaml:"backend"`
	// StripPrefix removes this prefix from the forwarded path (after normalisation).
	StripPrefix string `yaml:"strip_prefix"`
	// Redirect answers matching requests with a redirect instead of sending them to a backend
	// (the route then has none).
	Redirect *Redirect `yaml:"redirect"`
	// Rewrite changes the path of the request forwarded to the backend.
	Rewrite *Rewrite `yaml:"rewrite"`
	// RequestHeaders change the request before it goes upstream; set Host here to replace the
	// original Host header, which is otherwise kept.
	RequestHeaders HeaderOps `yaml:"request_headers"`
	// ResponseHeaders change the response before it goes to the client.
	ResponseHeaders HeaderOps `yaml:"response_headers"`
	// Limits override the frontend's per-request limits for this route's requests.
	Limits *Limits `yaml:"limits"`
}

// Redirect is a route's redirect answer: the Location is the request's URL with the parts set
// here replaced, as the Gateway API's RequestRedirect filter builds it. The query string is kept.
type Redirect struct {
	// Scheme is http or https; default the request's.
	Scheme string `yaml:"scheme"`
	// Host replaces the request's host name; default the request's (without its port).
	Host string `yaml:"host"`
	// Port is the Location's port; default the port implied by Scheme when Scheme is set,
	// otherwise the request's. A scheme's own port (80 for http, 443 for https) is left out.
	Port int `yaml:"port"`
	// Path replaces the whole path.
	Path string `yaml:"path"`
	// ReplacePrefix replaces the route's match.path_prefix, whole path segments only (the
	// Gateway API's ReplacePrefixMatch).
	ReplacePrefix string `yaml:"replace_prefix"`
	// Status is 301, 302 (default), 303, 307 or 308.
	Status int `yaml:"status"`
}

// Rewrite changes the path of a forwarded request (after normalisation); the query is kept.
type Rewrite struct {
	// Path replaces the whole path.
	Path string `yaml:"path"`
	// ReplacePrefix replaces the route's match.path_prefix, whole path segments only (the
	// Gateway API's ReplacePrefixMatch).
	ReplacePrefix string `yaml:"replace_prefix"`
}

// Match lists conditions that must all hold. An empty Match matches everything.
type Match struct {
	// Host is one name or a list: exact (api.example.com) or a wildcard (*.example.com).
	Host StringList `yaml:"host"`
	// Path matches the normalised path exactly.
	Path string `yaml:"path"`
	// PathPrefix matches the normalised path by prefix.
	PathPrefix string `yaml:"path_prefix"`
	// PathRegex is an RE2 regular expression matched against the normalised path.
	PathRegex string `yaml:"path_regex"`
	// Methods lists allowed request methods (upper case).
	Methods []string `yaml:"methods"`
	// Headers: each named header must have this exact value, or match "~regex".
	Headers StringMap `yaml:"headers"`
	// Cookies: each named cookie must have this exact value, or match "~regex".
	Cookies StringMap `yaml:"cookies"`
	// UserAgent is an exact value or "~regex" for the User-Agent header.
	UserAgent string `yaml:"user_agent"`
	// Query: each named query parameter must have this exact value, or match "~regex".
	Query StringMap `yaml:"query"`
	// Source lists client CIDRs (or single addresses).
	Source []string `yaml:"source"`
	// SNI matches the server name of a TLS ClientHello on tcp frontends: exact or a wildcard
	// (*.example.com).
	SNI StringList `yaml:"sni"`
	// ALPN matches when the ClientHello offers any of these protocols (tcp frontends).
	ALPN []string `yaml:"alpn"`
}

// HeaderOps sets, adds and removes header fields. Remove runs first, then Set, then Add.
type HeaderOps struct {
	Set    StringMap `yaml:"set"`
	Add    StringMap `yaml:"add"`
	Remove []string  `yaml:"remove"`
}

// Backend is a named group of servers and how to balance over them.
type Backend struct {
	Name string `yaml:"name"`
	// Algorithm: round_robin (default) | weighted_round_robin | least_connections | source_ip_hash |
	// random_two_choices | least_response_time | hash | maglev.
	Algorithm string `yaml:"algorithm"`
	// HashKey is what algorithms hash and maglev hash on http frontends: uri (default) |
	// header:NAME | cookie:NAME.
	HashKey  string          `yaml:"hash_key"`
	Servers  []Server        `yaml:"servers"`
	Sticky   *Sticky         `yaml:"sticky"`
	Timeouts BackendTimeouts `yaml:"timeouts"`
	Pool     Pool            `yaml:"pool"`
	// HealthCheck runs active checks against every server; absent, servers are assumed healthy
	// and only outlier detection takes them out.
	HealthCheck *HealthCheck `yaml:"health_check"`
	// OutlierDetection ejects servers that fail real traffic (passive checks).
	OutlierDetection OutlierDetection `yaml:"outlier_detection"`
	// Retry bounds retries of failed requests on other servers.
	Retry Retry `yaml:"retry"`
	// ProxyProtocol sends a PROXY protocol header, v1 or v2, at the start of every connection to
	// a server (and of tcp and http health checks), so the server sees the client's address.
	ProxyProtocol string `yaml:"proxy_protocol"`
	// MaxConnections limits the connections to each server (tcp frontends); 0 (default) is no
	// limit. Beyond it new connections wait in the queue.
	MaxConnections int `yaml:"max_connections"`
	// Queue bounds the wait for a free server when every server is at MaxConnections.
	Queue Queue `yaml:"queue"`
	// SlowStart ramps the weight of a server that comes back (health restored, or out of
	// maintenance) from a small share to its full weight over this time; 0 (default) is off.
	SlowStart Duration `yaml:"slow_start"`
	// MaglevTableSize is the size of maglev's lookup table: a prime larger than the number of
	// servers; default 65537. At least 100 entries per server keep each within 1% of its share.
	MaglevTableSize int `yaml:"maglev_table_size"`
	// Protocol spoken to the servers of an http frontend: http1 (default) | h2 (HTTP/2 over TLS)
	// | h2c (HTTP/2 without TLS). gRPC servers need h2 or h2c.
	Protocol string `yaml:"protocol"`
	// TLS encrypts the connections to the servers (https, or h2).
	TLS *ClientTLS `yaml:"tls"`
}

// Queue is the wait line of a backend whose servers are all at max_connections.
type Queue struct {
	// Size is how many connections may wait; default 1024; beyond it they are refused.
	Size int `yaml:"size"`
	// Timeout is how long one may wait; default 5s; then it is refused.
	Timeout Duration `yaml:"timeout"`
}

// HealthCheck configures the active checks of a backend's servers. A server's own health_check
// overrides the fields it sets.
type HealthCheck struct {
	// Type: tcp (default) | http | grpc | icmp | udp | exec | none (no active checks for this
	// server).
	Type string `yaml:"type,omitempty"`
	// Interval between checks of one server, with a small random jitter; default 2s.
	Interval Duration `yaml:"interval,omitempty"`
	// Timeout bounds one check; default 1s.
	Timeout Duration `yaml:"timeout,omitempty"`
	// Rise consecutive successes bring a down server up; default 2.
	Rise int `yaml:"rise,omitempty"`
	// Fall consecutive failures take an up server down; default 3.
	Fall int `yaml:"fall,omitempty"`
	// Initial is the state before the first verdict: up (default, so a restart does not
	// black-hole traffic) | down (the server must pass rise checks first).
	Initial string `yaml:"initial,omitempty"`
	// Port checks this port instead of the server's.
	Port int `yaml:"port,omitempty"`
	// Address checks this host or host:port instead of the server's address.
	Address string `yaml:"address,omitempty"`

	// Method of the http check; default GET.
	Method string `yaml:"method,omitempty"`
	// Path of the http check, with an optional query; default /.
	Path string `yaml:"path,omitempty"`
	// Host header of the http check; default the checked address.
	Host string `yaml:"host,omitempty"`
	// Headers are added to the http check's request.
	Headers StringMap `yaml:"headers,omitempty"`
	// ExpectStatus lists accepted statuses and ranges ("200-399"); default 200-399.
	ExpectStatus StringList `yaml:"expect_status,omitempty"`
	// ExpectBody must occur in the response body (the first 64 KiB), or match "~regex".
	ExpectBody string `yaml:"expect_body,omitempty"`
	// TLS makes the http, grpc or tcp check speak TLS (tls: {} for the defaults); http and grpc
	// checks of a backend with tls or protocol h2 use the backend's.
	TLS *ClientTLS `yaml:"tls,omitempty"`
	// Service is the service name a grpc check asks about (grpc.health.v1.Health/Check); default
	// "" (the server as a whole).
	Service string `yaml:"service,omitempty"`

	// Send is written after connecting (tcp) or as the datagram (udp). YAML escapes such as
	// "\r\n" and "\x00" work in double-quoted strings.
	Send string `yaml:"send,omitempty"`
	// SendHex is Send written as hex digits, for binary protocols (a DNS query).
	SendHex string `yaml:"send_hex,omitempty"`
	// Expect must occur in the reply, or match "~regex". For udp without Expect any reply passes.
	Expect string `yaml:"expect,omitempty"`

	// ProxyProtocol sends a PROXY protocol header (v1 or v2, with the LOCAL command) first on
	// tcp and http checks, for servers that demand one; default the backend's proxy_protocol;
	// none turns it off.
	ProxyProtocol string `yaml:"proxy_protocol,omitempty"`

	// Command is the exec check: program and arguments, run with WAAGE_SERVER_ADDRESS,
	// WAAGE_SERVER_HOST, WAAGE_SERVER_PORT, WAAGE_SERVER_NAME and WAAGE_BACKEND in its
	// environment; exit status 0 is healthy; it is killed at the timeout.
	Command []string `yaml:"command,omitempty"`
}

// ClientTLS configures TLS from waage to a server.
type ClientTLS struct {
	// ServerName is sent as SNI and verified; default the host of the address.
	ServerName string `yaml:"server_name"`
	// CA is a PEM bundle to verify the server with; default the system roots.
	CA string `yaml:"ca"`
	// InsecureSkipVerify accepts any certificate; only when said explicitly.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// Cert and Key are a client certificate for servers that require one.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// OutlierDetection ejects a server after consecutive failures of real traffic, for a time that
// grows with each ejection.
type OutlierDetection struct {
	// ConsecutiveFailures (connect failures, resets, timeouts) eject a server; default 5, 0 off.
	ConsecutiveFailures *int `yaml:"consecutive_failures"`
	// Consecutive5xx counts 5xx answers as failures too and ejects after this many; 0 (default)
	// is off.
	Consecutive5xx int `yaml:"consecutive_5xx"`
	// BaseEjectionTime is the first ejection's length; each further ejection adds it again;
	// default 30s.
	BaseEjectionTime Duration `yaml:"base_ejection_time"`
	// MaxEjectionTime caps an ejection's length; default 5m. A server that stays clean this long
	// starts again from the base time.
	MaxEjectionTime Duration `yaml:"max_ejection_time"`
	// MaxEjectionPercent caps the share of a backend's servers ejected at once (at least one
	// server may always be ejected); default 50.
	MaxEjectionPercent *int `yaml:"max_ejection_percent"`
}

// Retry configures retries on other servers. Connect failures are retried for every request, and
// idempotent requests without a body also when the connection breaks before the response;
// OnStatus adds retries on chosen statuses. Every retry draws on the budget.
type Retry struct {
	// Attempts is the most tries one request gets, the first included; default 3.
	Attempts int `yaml:"attempts"`
	// OnStatus retries idempotent requests without a body that got one of these statuses
	// (opt-in; 502, 503, 504 are the usual ones).
	OnStatus []int `yaml:"on_status"`
	// Budget bounds retries so they cannot multiply the load of a struggling backend.
	Budget RetryBudget `yaml:"budget"`
}

// RetryBudget allows retries up to Percent of the requests of the last 10 seconds, plus
// MinPerSecond so that a quiet backend can still retry.
type RetryBudget struct {
	// Percent of requests that may be retries; default 20.
	Percent *int `yaml:"percent"`
	// MinPerSecond retries are always allowed; default 10.
	MinPerSecond *int `yaml:"min_per_second"`
}

// Sticky pins a client to one server with a cookie that waage sets.
type Sticky struct {
	Cookie string `yaml:"cookie"`
}

// BackendTimeouts bound how long waage waits for servers.
type BackendTimeouts struct {
	// Connect bounds one TCP connect to a server; default 5s.
	Connect Duration `yaml:"connect"`
	// Response bounds the wait for the response head after the request was sent, and each gap while
	// the response body streams; default 60s. Exceeded before the head: 504.
	Response Duration `yaml:"response"`
}

// Pool configures the idle keep-alive connections kept to each server.
type Pool struct {
	// MaxIdle is the number of idle connections kept per server; default 64; 0 is replaced by the
	// default, -1 disables pooling.
	MaxIdle int `yaml:"max_idle"`
	// IdleTimeout closes pooled connections idle longer than this; default 30s (below common server
	// keep-alive timeouts so waage closes first).
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// Server is one upstream address.
type Server struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// Weight defaults to 1; 0 means no new traffic.
	Weight *int `yaml:"weight"`
	// State is the administrative state: ready (default) | drain | maintenance.
	State string `yaml:"state"`
	// Backup servers take traffic only when no primary server is usable.
	Backup bool `yaml:"backup"`
	// HealthCheck overrides the fields of the backend's health check that it sets (a separate
	// port, a different path, type none).
	HealthCheck *HealthCheck `yaml:"health_check"`
}

// WeightOr returns the server's weight, or def when none was given.
func (s Server) WeightOr(def int) int {
	if s.Weight == nil {
		return def
	}
	return *s.Weight
}

// Duration is a time.Duration written as a Go duration string ("500ms", "2s") in YAML.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// StringList is a YAML scalar or a sequence of scalars.
type StringList []string

// KV is one entry of a StringMap.
type KV struct {
	Key   string
	Value string
}

// StringMap is a YAML mapping of strings to strings that keeps the file's order, so header
// operations apply in the order written.
type StringMap []KV
