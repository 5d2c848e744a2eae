package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Limits protect a frontend against floods and slow clients. Zero values mean no limit (the
// timeouts keep their defaults). On http, tcp and udp frontends as each key says; a route may
// override the per-request ones (request_rate, min_body_rate, max_body_bytes).
type Limits struct {
	// MaxConnections caps the frontend's open connections; beyond it accept waits (http, tcp).
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerSource closes a source's new connection at once beyond this many open ones.
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// ConnectionRatePerSource caps new connections per second per source address.
	ConnectionRatePerSource int `yaml:"connection_rate_per_source"`
	// RequestRate answers 429 with Retry-After beyond a token bucket's rate (http).
	RequestRate *RequestRate `yaml:"request_rate"`
	// HeaderTimeout bounds the arrival of a whole request head, from its first byte on a
	// keep-alive connection and from the connection's start for its first request (http; 408).
	// It is timeouts.client_header under the name the other limits use; set one of them.
	HeaderTimeout Duration `yaml:"header_timeout"`
	// MinBodyRate is the rate in bytes/s a request body must keep up after its first second
	// (http; 408 and close below it).
	MinBodyRate ByteSize `yaml:"min_body_rate"`
	// MaxHeaderBytes bounds a request head (http; 431).
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// MaxURIBytes bounds a request target (http; 414).
	MaxURIBytes ByteSize `yaml:"max_uri_bytes"`
	// MaxBodyBytes bounds a request body, declared or streamed (http; 413).
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// PacketRatePerSource caps datagrams per second per source address (udp).
	PacketRatePerSource int `yaml:"packet_rate_per_source"`
}

// RequestRate is a token bucket: Rate requests per Per on average, bursts up to Burst, one bucket
// per Key.
type RequestRate struct {
	Rate  int      `yaml:"rate"`
	Per   Duration `yaml:"per"`   // default 1s
	Burst int      `yaml:"burst"` // default Rate
	// Key: source (default) | header:NAME | cookie:NAME. Requests without the header or cookie
	// share the bucket of their source address.
	Key string `yaml:"key"`
}

// Access lists the sources a frontend serves. Deny wins over allow; with allow set, every other
// source is refused. Connections (and UDP datagrams) from refused sources are closed at accept,
// before anything is read.
type Access struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// MaxHeadBytes is the largest max_header_bytes: the request reader's buffer.
const MaxHeadBytes = 64 << 10

// ByteSize is a number of bytes: a plain integer, or one with a unit: B, KB, MB, GB (1024-based,
// as nginx and HAProxy count; KiB, MiB, GiB say the same).
type ByteSize int64

var byteSizeType = reflect.TypeFor[ByteSize]()

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}

// ParseByteSize reads a ByteSize as the config writes it.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("expected a size like 32768, 32KB or 100MB, got %q", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %s is out of range", s)
	}
	return ByteSize(n * mult), nil
}

func (d *decoder) byteSize(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "a size")
	if !ok {
		return
	}
	b, err := ParseByteSize(s)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return
	}
	v.SetInt(int64(b))
}

// RequestRateKeys are request_rate.key's forms.
const (
	RateKeySource = "source"
	RateKeyHeader = "header:"
	RateKeyCookie = "cookie:"
)

// limits validates a frontend's limits and access for its mode.
func (v *validator) limits(p string, l *Limits, a *Access, mode string) {
	ints := []struct {
		key   string
		value int
		modes string
	}{
		{"max_connections", l.MaxConnections, "http tcp"},
		{"max_connections_per_source", l.MaxConnectionsPerSource, "http tcp"},
		{"connection_rate_per_source", l.ConnectionRatePerSource, "http tcp"},
		{"packet_rate_per_source", l.PacketRatePerSource, "udp"},
	}
	for _, i := range ints {
		path := p + ".limits." + i.key
		if i.value < 0 {
			v.errorf(path, "must be 0 (no limit) or more")
		}
		if i.value != 0 && !strings.Contains(i.modes, mode) {
			v.errorf(path, "not used on %s frontends (only %s)", mode, strings.ReplaceAll(i.modes, " ", ", "))
		}
	}
	httpOnly := map[string]bool{
		"request_rate":     l.RequestRate != nil,
		"header_timeout":   l.HeaderTimeout != 0,
		"min_body_rate":    l.MinBodyRate != 0,
		"max_header_bytes": l.MaxHeaderBytes != 0,
		"max_uri_bytes":    l.MaxURIBytes != 0,
		"max_body_bytes":   l.MaxBodyBytes != 0,
	}
	if mode != "http" {
		for _, key := range []string{"request_rate", "header_timeout", "min_body_rate", "max_header_bytes", "max_uri_bytes", "max_body_bytes"} {
			if httpOnly[key] {
				v.errorf(p+".limits."+key, "only used on http frontends")
			}
		}
	}
	v.nonNegative(p+".limits.header_timeout", l.HeaderTimeout)
	if mh := l.MaxHeaderBytes; mh != 0 && (mh < 1024 || mh > MaxHeadBytes) {
		v.errorf(p+".limits.max_header_bytes", "must be between 1KB and 64KB, got %d", mh)
	}
	if l.MaxURIBytes != 0 && l.MaxURIBytes < 16 {
		v.errorf(p+".limits.max_uri_bytes", "must be at least 16 bytes, got %d", l.MaxURIBytes)
	}
	v.requestRate(p+".limits.request_rate", l.RequestRate)
	for _, list := range []struct {
		key  string
		cidr []string
	}{{"allow", a.Allow}, {"deny", a.Deny}} {
		for k, s := range list.cidr {
			if !validSource(s) {
				v.errorf(indexPath(p+".access."+list.key, k), "invalid source %q: want a CIDR (10.0.0.0/8) or an IP address", s)
			}
		}
	}
}

// routeLimits validates the limits a route overrides: only the per-request ones.
func (v *validator) routeLimits(p string, l *Limits, mode string) {
	if l == nil {
		return
	}
	if mode != "http" {
		v.errorf(p+".limits", "only valid on http frontends")
		return
	}
	perRequest := Limits{RequestRate: l.RequestRate, MinBodyRate: l.MinBodyRate, MaxBodyBytes: l.MaxBodyBytes}
	if *l != perRequest {
		v.errorf(p+".limits", "a route may set only request_rate, min_body_rate and max_body_bytes; the others are the frontend's")
	}
	v.requestRate(p+".limits.request_rate", l.RequestRate)
}

func (v *validator) requestRate(p string, r *RequestRate) {
	if r == nil {
		return
	}
	if r.Rate <= 0 {
		v.errorf(p+".rate", "must be 1 or more")
	}
	if r.Burst < 0 {
		v.errorf(p+".burst", "must not be negative")
	}
	v.nonNegative(p+".per", r.Per)
	switch k := r.Key; {
	case k == "" || k == RateKeySource:
	case strings.HasPrefix(k, RateKeyHeader) && isToken(k[len(RateKeyHeader):]):
	case strings.HasPrefix(k, RateKeyCookie) && isToken(k[len(RateKeyCookie):]):
	default:
		v.errorf(p+".key", "must be source, header:NAME or cookie:NAME, got %q", k)
	}
}

// applyDefaults fills request_rate's per and burst.
func (r *RequestRate) applyDefaults() {
	if r == nil {
		return
	}
	orDefault(&r.Per, Duration(time.Second))
	if r.Burst == 0 {
		r.Burst = r.Rate
	}
}

// RetryAfter is how long a client over the rate waits for its next token, in whole seconds, at
// least 1.
func (r *RequestRate) RetryAfter() int {
	s := int(math.Ceil(r.Per.D().Seconds() / float64(max(r.Rate, 1))))
	return max(s, 1)
}
