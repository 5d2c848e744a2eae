package config

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Health-check, outlier-detection and retry defaults (see the field comments in types.go).
const (
	defaultCheckType        = "tcp"
	defaultCheckInterval    = 2 * time.Second
	defaultCheckTimeout     = time.Second
	defaultCheckRise        = 2
	defaultCheckFall        = 3
	defaultCheckInitial     = "up"
	defaultCheckMethod      = "GET"
	defaultCheckPath        = "/"
	defaultExpectStatus     = "200-399"
	defaultConsecutiveFails = 5
	defaultBaseEjection     = 30 * time.Second
	defaultMaxEjection      = 5 * time.Minute
	defaultMaxEjectPercent  = 50
	defaultRetryAttempts    = 3
	defaultBudgetPercent    = 20
	defaultBudgetMinPerSec  = 10
)

var (
	checkTypes    = []string{"tcp", "http", "grpc", "icmp", "udp", "exec", "none"}
	checkInitials = []string{"up", "down"}
	// checkProxyProtocols adds none, to turn off the header a check inherits from its backend.
	checkProxyProtocols = []string{"v1", "v2", "none"}
)

// HealthCheckFor returns the effective health check of the backend's server i: the backend's
// check with the fields the server's own health_check sets laid over it, defaults applied. A
// server that names another type inherits only the timing fields (interval, timeout, rise, fall,
// initial, port, address), not the other type's request. It returns nil when the server has no
// active check (none configured, or type none).
func (b *Backend) HealthCheckFor(i int) *HealthCheck {
	var hc HealthCheck
	if b.HealthCheck != nil {
		hc = *b.HealthCheck
	}
	if over := b.Servers[i].HealthCheck; over != nil {
		if over.Type != "" && over.Type != hc.checkType() {
			hc = HealthCheck{
				Interval: hc.Interval, Timeout: hc.Timeout, Rise: hc.Rise, Fall: hc.Fall,
				Initial: hc.Initial, Port: hc.Port, Address: hc.Address,
			}
		}
		overlay(&hc, over)
	} else if b.HealthCheck == nil {
		return nil
	}
	if hc.checkType() == "none" {
		return nil
	}
	if t := hc.checkType(); hc.ProxyProtocol == "" && (t == "tcp" || t == "http") {
		hc.ProxyProtocol = b.ProxyProtocol
	}
	if t := hc.checkType(); hc.TLS == nil && (t == "http" || t == "grpc") {
		hc.TLS = b.serverTLS()
	}
	hc.applyDefaults()
	return &hc
}

// overlay copies every field of over that is set (not its zero value) onto hc.
func overlay(hc, over *HealthCheck) {
	dst, src := reflect.ValueOf(hc).Elem(), reflect.ValueOf(over).Elem()
	for i := range src.NumField() {
		if f := src.Field(i); !f.IsZero() {
			dst.Field(i).Set(f)
		}
	}
}

func (hc *HealthCheck) checkType() string {
	if hc.Type == "" {
		return defaultCheckType
	}
	return hc.Type
}

func (hc *HealthCheck) applyDefaults() {
	orDefault(&hc.Type, defaultCheckType)
	orDefault(&hc.Interval, Duration(defaultCheckInterval))
	orDefault(&hc.Timeout, Duration(defaultCheckTimeout))
	orDefault(&hc.Rise, defaultCheckRise)
	orDefault(&hc.Fall, defaultCheckFall)
	orDefault(&hc.Initial, defaultCheckInitial)
	if hc.Type == "http" {
		orDefault(&hc.Method, defaultCheckMethod)
		orDefault(&hc.Path, defaultCheckPath)
		if len(hc.ExpectStatus) == 0 {
			hc.ExpectStatus = StringList{defaultExpectStatus}
		}
	}
}

func (o *OutlierDetection) applyDefaults() {
	if o.ConsecutiveFailures == nil {
		n := defaultConsecutiveFails
		o.ConsecutiveFailures = &n
	}
	orDefault(&o.BaseEjectionTime, Duration(defaultBaseEjection))
	orDefault(&o.MaxEjectionTime, Duration(defaultMaxEjection))
	if o.MaxEjectionPercent == nil {
		n := defaultMaxEjectPercent
		o.MaxEjectionPercent = &n
	}
}

// MaxAttempts is the most tries one request or connection gets, the first included:
// retry.attempts (default 3), but no more than the backend has servers, and at least 1.
func (b *Backend) MaxAttempts() int {
	n := b.Retry.Attempts
	if n == 0 {
		n = defaultRetryAttempts
	}
	return max(min(n, len(b.Servers)), 1)
}

func (r *Retry) applyDefaults() {
	orDefault(&r.Attempts, defaultRetryAttempts)
	if r.Budget.Percent == nil {
		n := defaultBudgetPercent
		r.Budget.Percent = &n
	}
	if r.Budget.MinPerSecond == nil {
		n := defaultBudgetMinPerSec
		r.Budget.MinPerSecond = &n
	}
}

// ParseStatusRange reads one expect_status entry: "200" or a range "200-399".
func ParseStatusRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	lo, err = strconv.Atoi(strings.TrimSpace(a))
	hi = lo
	if err == nil && isRange {
		hi, err = strconv.Atoi(strings.TrimSpace(b))
	}
	if err != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf("invalid status %q: want a status (200) or a range (200-399) within 100-599", s)
	}
	return lo, hi, nil
}

// healthCheck validates the fields of one health_check block as written (the backend's, or a
// server's override).
func (v *validator) healthCheck(p string, hc *HealthCheck) {
	v.oneOf(p+".type", hc.Type, checkTypes)
	v.positive(p+".interval", hc.Interval)
	v.positive(p+".timeout", hc.Timeout)
	if hc.Rise < 0 {
		v.errorf(p+".rise", "must be at least 1")
	}
	if hc.Fall < 0 {
		v.errorf(p+".fall", "must be at least 1")
	}
	v.oneOf(p+".initial", hc.Initial, checkInitials)
	v.oneOf(p+".proxy_protocol", hc.ProxyProtocol, checkProxyProtocols)
	if hc.Port < 0 || hc.Port > 65535 {
		v.errorf(p+".port", "must be a port from 1 to 65535")
	}
	if a := hc.Address; a != "" {
		if _, err := netip.ParseAddr(a); err != nil && !isHostname(a) {
			if _, _, ok := v.hostPort(p+".address", a, 1, true); ok && hc.Port != 0 {
				v.errorf(p+".port", "address %q already names a port", a)
			}
		}
	}
	if hc.Method != "" && !isToken(hc.Method) {
		v.errorf(p+".method", "invalid method %q", hc.Method)
	}
	if hc.Path != "" && (!strings.HasPrefix(hc.Path, "/") || strings.ContainsAny(hc.Path, " \t\r\n\x00")) {
		v.errorf(p+".path", "must start with / and contain no spaces or control characters")
	}
	if hc.Host != "" && strings.ContainsAny(hc.Host, " \t\r\n\x00/") {
		v.errorf(p+".host", "invalid host %q", hc.Host)
	}
	for _, kv := range hc.Headers {
		if !isToken(kv.Key) {
			v.keyErrorf(p+".headers."+kv.Key, "invalid header name %q", kv.Key)
		} else if strings.ContainsAny(kv.Value, "\r\n\x00") {
			v.errorf(p+".headers."+kv.Key, "must not contain CR, LF or NUL")
		}
	}
	for i, s := range hc.ExpectStatus {
		if _, _, err := ParseStatusRange(s); err != nil {
			v.errorf(indexPath(p+".expect_status", i), "%v", err)
		}
	}
	v.pattern(p+".expect_body", hc.ExpectBody)
	v.pattern(p+".expect", hc.Expect)
	if hc.SendHex != "" {
		if _, err := hex.DecodeString(strings.Join(strings.Fields(hc.SendHex), "")); err != nil {
			v.errorf(p+".send_hex", "invalid hex: %v", err)
		}
		if hc.Send != "" {
			v.errorf(p+".send_hex", "give send or send_hex, not both")
		}
	}
	if len(hc.Command) > 0 && hc.Command[0] == "" {
		v.errorf(p+".command", "the program must not be empty")
	}
	if t := hc.TLS; t != nil && (t.Cert == "") != (t.Key == "") {
		v.errorf(p+".tls", "cert and key go together")
	}
}

// checkFields names, per field group, the check types that use it, so a field given for a type
// that ignores it is an error rather than a silent no-op.
var checkFields = []struct {
	key   string
	set   func(*HealthCheck) bool
	types []string
}{
	{"method", func(h *HealthCheck) bool { return h.Method != "" }, []string{"http"}},
	{"path", func(h *HealthCheck) bool { return h.Path != "" }, []string{"http"}},
	{"host", func(h *HealthCheck) bool { return h.Host != "" }, []string{"http"}},
	{"headers", func(h *HealthCheck) bool { return len(h.Headers) > 0 }, []string{"http"}},
	{"expect_status", func(h *HealthCheck) bool { return len(h.ExpectStatus) > 0 }, []string{"http"}},
	{"expect_body", func(h *HealthCheck) bool { return h.ExpectBody != "" }, []string{"http"}},
	{"tls", func(h *HealthCheck) bool { return h.TLS != nil }, []string{"http", "grpc", "tcp"}},
	{"service", func(h *HealthCheck) bool { return h.Service != "" }, []string{"grpc"}},
	{"send", func(h *HealthCheck) bool { return h.Send != "" }, []string{"tcp", "udp"}},
	{"send_hex", func(h *HealthCheck) bool { return h.SendHex != "" }, []string{"tcp", "udp"}},
	{"expect", func(h *HealthCheck) bool { return h.Expect != "" }, []string{"tcp", "udp"}},
	{"command", func(h *HealthCheck) bool { return len(h.Command) > 0 }, []string{"exec"}},
	{"proxy_protocol", func(h *HealthCheck) bool { return h.ProxyProtocol != "" }, []string{"tcp", "http"}},
	{"port", func(h *HealthCheck) bool { return h.Port != 0 }, []string{"tcp", "http", "grpc", "udp", "exec"}},
}

// effectiveCheck validates what one server's merged check needs as a whole: fields that its type
// uses, and what the type requires. p is where the problem is reported: the server's override
// when it has one, else the backend's block.
func (v *validator) effectiveCheck(p string, hc *HealthCheck) {
	t := hc.checkType()
	for _, f := range checkFields {
		if f.set(hc) && !slices.Contains(f.types, t) {
			v.errorf(p+"."+f.key, "not used by %s checks (used by %s)", t, strings.Join(f.types, ", "))
		}
	}
	switch t {
	case "exec":
		if len(hc.Command) == 0 {
			v.errorf(p+".command", "is required for exec checks")
		}
	case "udp":
		if hc.Send == "" && hc.SendHex == "" {
			v.errorf(p+".send", "is required for udp checks (send or send_hex)")
		}
	}
}

// backendHealth validates a backend's health_check, its servers' overrides, outlier_detection,
// retry and slow_start.
func (v *validator) backendHealth(p string, b *Backend) {
	if b.HealthCheck != nil {
		v.healthCheck(p+".health_check", b.HealthCheck)
	}
	for i := range b.Servers {
		sp := indexPath(p+".servers", i) + ".health_check"
		if over := b.Servers[i].HealthCheck; over != nil {
			v.healthCheck(sp, over)
		}
		if hc := b.HealthCheckFor(i); hc != nil {
			if b.Servers[i].HealthCheck == nil {
				sp = p + ".health_check"
			}
			v.effectiveCheck(sp, hc)
		}
	}
	o := &b.OutlierDetection
	op := p + ".outlier_detection"
	if o.ConsecutiveFailures != nil && *o.ConsecutiveFailures < 0 {
		v.errorf(op+".consecutive_failures", "must be 0 (off) or more")
	}
	if o.Consecutive5xx < 0 {
		v.errorf(op+".consecutive_5xx", "must be 0 (off) or more")
	}
	v.positive(op+".base_ejection_time", o.BaseEjectionTime)
	v.positive(op+".max_ejection_time", o.MaxEjectionTime)
	if o.BaseEjectionTime > 0 && o.MaxEjectionTime > 0 && o.MaxEjectionTime < o.BaseEjectionTime {
		v.errorf(op+".max_ejection_time", "must not be less than base_ejection_time")
	}
	if pc := o.MaxEjectionPercent; pc != nil && (*pc < 0 || *pc > 100) {
		v.errorf(op+".max_ejection_percent", "must be between 0 and 100")
	}
	r := &b.Retry
	rp := p + ".retry"
	if r.Attempts < 0 || (r.Attempts == 0 && v.src.present(rp+".attempts")) {
		v.errorf(rp+".attempts", "must be at least 1 (1 means no retries)")
	}
	for i, s := range r.OnStatus {
		if s < 400 || s > 599 {
			v.errorf(indexPath(rp+".on_status", i), "must be a 4xx or 5xx status, got %d", s)
		}
	}
	if pc := r.Budget.Percent; pc != nil && (*pc < 0 || *pc > 100) {
		v.errorf(rp+".budget.percent", "must be between 0 and 100")
	}
	if m := r.Budget.MinPerSecond; m != nil && *m < 0 {
		v.errorf(rp+".budget.min_per_second", "must not be negative")
	}
	v.nonNegative(p+".slow_start", b.SlowStart)
}
