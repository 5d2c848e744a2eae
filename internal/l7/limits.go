package l7

import (
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/guard"
)

// RequestLimits are the per-request limits of a frontend, or of a route that overrides some of
// them (config limits: max_uri_bytes, max_body_bytes, min_body_rate, request_rate).
type RequestLimits struct {
	MaxURIBytes  int   // request target; 414 beyond it
	MaxBodyBytes int64 // request body, declared or streamed; 413 beyond it
	MinBodyRate  int64 // bytes/s a body must keep up after its first second; 408 below it
	Rate         *guard.RequestLimiter
	rateKind     uint8  // rateBySource, rateByHeader, rateByCookie
	rateName     string // the header (as configured) or cookie name
}

const (
	rateBySource = iota
	rateByHeader
	rateByCookie
)

// NewRequestLimits compiles l's per-request limits; rl is the limiter of l.RequestRate (nil
// without one), kept by the frontend's guard across reloads.
func NewRequestLimits(l config.Limits, rl *guard.RequestLimiter) *RequestLimits {
	lim := &RequestLimits{MaxURIBytes: int(l.MaxURIBytes), MaxBodyBytes: int64(l.MaxBodyBytes), MinBodyRate: int64(l.MinBodyRate), Rate: rl}
	if rl != nil {
		switch k := rl.Rate.Key; {
		case strings.HasPrefix(k, config.RateKeyHeader):
			lim.rateKind, lim.rateName = rateByHeader, k[len(config.RateKeyHeader):]
		case strings.HasPrefix(k, config.RateKeyCookie):
			lim.rateKind, lim.rateName = rateByCookie, k[len(config.RateKeyCookie):]
		}
	}
	return lim
}

// Override returns the limits of a route: the frontend's (lim), with those the route sets
// replaced; rl is the route's own request_rate limiter, nil to keep the frontend's.
func (lim *RequestLimits) Override(l config.Limits, rl *guard.RequestLimiter) *RequestLimits {
	out := *lim
	if l.MaxBodyBytes != 0 {
		out.MaxBodyBytes = int64(l.MaxBodyBytes)
	}
	if l.MinBodyRate != 0 {
		out.MinBodyRate = int64(l.MinBodyRate)
	}
	if rl != nil {
		r := NewRequestLimits(config.Limits{}, rl)
		out.Rate, out.rateKind, out.rateName = r.Rate, r.rateKind, r.rateName
	}
	return &out
}

// limits returns the limits a request on route rt (nil before routing) is held to.
func (h *Handler) limits(rt *Route) *RequestLimits {
	if rt != nil && rt.Limits != nil {
		return rt.Limits
	}
	if h.Limits != nil {
		return h.Limits
	}
	return &noLimits
}

var noLimits RequestLimits

// allowH1 takes a token for an HTTP/1.1 request; when none is left it returns false and the wait
// for the next one.
func (lim *RequestLimits) allowH1(remote netip.Addr, req *request, now time.Time) (bool, time.Duration) {
	rl := lim.Rate
	switch lim.rateKind {
	case rateByHeader:
		for i := range req.headers {
			if eqFold(req.headers[i].name, lim.rateName) {
				return rl.ByKey.Allow(string(req.headers[i].value), now)
			}
		}
	case rateByCookie:
		if v, ok := cookieValue(req, lim.rateName); ok {
			return rl.ByKey.Allow(string(v), now)
		}
	}
	return rl.BySource.Allow(remote, now)
}

// allowH2 is allowH1 for a request of the net/http-based path (HTTP/2 streams).
func (lim *RequestLimits) allowH2(f *forward, now time.Time) (bool, time.Duration) {
	rl := lim.Rate
	switch lim.rateKind {
	case rateByHeader:
		if v := f.header().Values(lim.rateName); len(v) > 0 {
			return rl.ByKey.Allow(v[0], now)
		}
	case rateByCookie:
		if c, err := f.cookie(lim.rateName); err == nil {
			return rl.ByKey.Allow(c.Value, now)
		}
	}
	return rl.BySource.Allow(f.remote, now)
}

// retryAfter is the Retry-After value for a wait: whole seconds, at least 1.
func retryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
}

// refuse counts a refusal of reason on the frontend's guard (and logs it, sampled).
func (h *Handler) refuse(r guard.Reason, remote netip.Addr, now time.Time) {
	if h.Guard != nil {
		h.Guard.Refuse(r, remote, now)
	}
}

// respondTooMany answers 429 with Retry-After; it returns whether the connection may stay open.
func (cc *clientConn) respondTooMany(h *Handler, ex *exchange, wait time.Duration) bool {
	w := cc.writer()
	cc.armWrite(time.Now(), h.idleTimeout())
	w.WriteString("HTTP/1.1 429 Too Many Requests\r\nCache-Control: no-store\r\nRetry-After: ")
	w.WriteString(retryAfter(wait))
	return cc.finishSimple(h, ex, 429, "text/plain; charset=utf-8", "429 Too Many Requests: request rate limit reached\n", cc.hasUnreadBody(&ex.req))
}

// checkRequest applies the per-request limits to an HTTP/1.1 request routed to rt; it answers and
// returns false (with the keep-alive verdict in keep) when one refuses it.
func (cc *clientConn) checkRequest(h *Handler, ex *exchange, rt *Route) (ok, keep bool) {
	lim := h.limits(rt)
	req := &ex.req
	if lim.Rate != nil {
		if ok, wait := lim.allowH1(cc.remote, req, ex.start); !ok {
			h.refuse(guard.Rate, cc.remote, ex.start)
			return false, cc.respondTooMany(h, ex, wait)
		}
	}
	if lim.MaxBodyBytes > 0 && req.contentLength > lim.MaxBodyBytes {
		h.refuse(guard.TooLarge, cc.remote, ex.start)
		return false, cc.respondError(h, ex, 413, "request body larger than "+strconv.FormatInt(lim.MaxBodyBytes, 10)+" bytes", true)
	}
	return true, false
}

// checkLimits applies the per-request limits to an HTTP/2 stream routed to f.rt; it answers and
// returns false when one refuses it. A body without a declared length is counted as it streams
// (limitedBody).
func (f *forward) checkLimits(sk sink) bool {
	h, r := f.h, f.r
	lim := h.limits(f.rt)
	if h.Limits != nil && h.Limits.MaxURIBytes > 0 && len(r.RequestURI) > h.Limits.MaxURIBytes {
		h.refuse(guard.TooLarge, f.remote, f.start)
		sk.Error(f, 414, "request target longer than "+strconv.Itoa(h.Limits.MaxURIBytes)+" bytes")
		return false
	}
	if lim.Rate != nil {
		if ok, wait := lim.allowH2(f, f.start); !ok {
			h.refuse(guard.Rate, f.remote, f.start)
			sk.Header().Set("Retry-After", retryAfter(wait))
			sk.Error(f, 429, "request rate limit reached")
			return false
		}
	}
	if max := lim.MaxBodyBytes; max > 0 {
		if r.ContentLength > max {
			h.refuse(guard.TooLarge, f.remote, f.start)
			sk.Error(f, 413, "request body larger than "+strconv.FormatInt(max, 10)+" bytes")
			return false
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &limitedBody{ReadCloser: r.Body, left: max, f: f}
		}
	}
	return true
}

// limitedBody fails a streamed request body that grows past max_body_bytes with a 413
// statusError.
type limitedBody struct {
	io.ReadCloser
	left int64
	f    *forward
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.left -= int64(n); b.left < 0 {
		b.f.h.refuse(guard.TooLarge, b.f.remote, time.Now())
		return 0, &statusError{413, "request body too large"}
	}
	return n, err
}
