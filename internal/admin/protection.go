package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/waage/waage/internal/adminapi"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/guard"
)

// The live deny list and the busiest sources: POST, DELETE and GET /api/deny, and
// GET /api/top-sources.

const (
	// defaultTopSources and maxTopSources bound GET /api/top-sources?limit=N.
	defaultTopSources = 20
	maxTopSources     = 1000
)

func denyEntryOf(e guard.DenyEntry, now time.Time) adminapi.DenyEntry {
	out := adminapi.DenyEntry{CIDR: e.Prefix.String()}
	if !e.Expires.IsZero() {
		exp := e.Expires
		left := int64(math.Ceil(exp.Sub(now).Seconds()))
		out.Expires, out.RemainingSeconds = &exp, &left
	}
	return out
}

// deny serves /api/deny: GET lists the blocks, POST adds one, DELETE lifts one.
func (s *Server) deny(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if s.authorize(w, r, accessRead) {
			s.getDenied(w, r)
		}
	case http.MethodPost:
		if s.authorize(w, r, accessWrite) {
			s.postDeny(w, r)
		}
	case http.MethodDelete:
		if s.authorize(w, r, accessWrite) {
			s.deleteDeny(w, r)
		}
	default:
		const allow = "GET, HEAD, POST, DELETE"
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+allow)
	}
}

func (s *Server) getDenied(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	entries := s.opts.Source.Denied()
	out := adminapi.Denied{Denied: make([]adminapi.DenyEntry, 0, len(entries))}
	for _, e := range entries {
		out.Denied = append(out.Denied, denyEntryOf(e, now))
	}
	writeJSON(w, http.StatusOK, out)
}

// postDeny blocks {"cidr": ..., "ttl": ...} and answers the block as it is now listed.
func (s *Server) postDeny(w http.ResponseWriter, r *http.Request) {
	body, err := readDenyBody(r, true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if body.cidr == nil {
		writeError(w, http.StatusBadRequest, `body: "cidr" is missing; want {"cidr": "198.51.100.0/24", "ttl": "10m"}`)
		return
	}
	p, err := parseCIDR(*body.cidr)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.opts.Source.Deny(p, body.ttl)
	now := time.Now()
	entry := guard.DenyEntry{Prefix: p}
	if body.ttl > 0 {
		entry.Expires = now.Add(body.ttl)
	}
	for _, e := range s.opts.Source.Denied() {
		if e.Prefix == p {
			entry = e
			break
		}
	}
	writeJSON(w, http.StatusOK, denyEntryOf(entry, now))
}

// deleteDeny lifts the block of ?cidr= or {"cidr": ...}: 404 when there is none of exactly that
// prefix.
func (s *Server) deleteDeny(w http.ResponseWriter, r *http.Request) {
	var raw string
	if q := r.URL.Query(); q.Has("cidr") {
		raw = q.Get("cidr")
	} else {
		body, err := readDenyBody(r, false)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if body.cidr == nil {
			writeError(w, http.StatusBadRequest, `want the block to lift: ?cidr=198.51.100.0/24 or the body {"cidr": "198.51.100.0/24"}`)
			return
		}
		raw = *body.cidr
	}
	p, err := parseCIDR(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.opts.Source.Undeny(p) {
		writeError(w, http.StatusNotFound, p.String()+" is not denied (a block is lifted by the CIDR it was made with; GET /api/deny lists them)")
		return
	}
	writeJSON(w, http.StatusOK, adminapi.Lifted{CIDR: p.String(), Lifted: true})
}

// denyBody is a request body of /api/deny.
type denyBody struct {
	cidr *string
	ttl  time.Duration // 0: until lifted
}

// readDenyBody reads {"cidr": "...", "ttl": "10m"} (ttl only when withTTL). An empty body reads
// as {}.
func readDenyBody(r *http.Request, withTTL bool) (denyBody, error) {
	shape := `{"cidr": "198.51.100.0/24"}`
	if withTTL {
		shape = `{"cidr": "198.51.100.0/24", "ttl": "10m"}`
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return denyBody{}, errors.New("body: " + err.Error())
	}
	var out denyBody
	if len(bytes.TrimSpace(data)) == 0 {
		return out, nil
	}
	var v struct {
		CIDR json.RawMessage `json:"cidr"`
		TTL  json.RawMessage `json:"ttl"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return out, fmt.Errorf("body: want %s: %v", shape, err)
	}
	if dec.More() {
		return out, errors.New("body: want one JSON object " + shape)
	}
	if v.CIDR != nil && string(v.CIDR) != "null" {
		var c string
		if json.Unmarshal(v.CIDR, &c) != nil {
			return out, fmt.Errorf(`cidr: want a string such as "198.51.100.0/24", got %s`, v.CIDR)
		}
		out.cidr = &c
	}
	if v.TTL != nil && string(v.TTL) != "null" {
		if !withTTL {
			return out, errors.New(`body: "ttl" has no meaning when lifting a block; want ` + shape)
		}
		var t string
		if json.Unmarshal(v.TTL, &t) != nil {
			return out, fmt.Errorf(`ttl: want a duration string such as "10m" or "1h30m", got %s`, v.TTL)
		}
		if t != "" {
			d, err := time.ParseDuration(t)
			if err != nil {
				return out, fmt.Errorf(`ttl: want a duration such as "10m" or "1h30m", got %q`, t)
			}
			if d <= 0 {
				return out, fmt.Errorf(`ttl: must be above 0, got %q; leave it out to block until lifted`, t)
			}
			out.ttl = d
		}
	}
	return out, nil
}

// parseCIDR reads an address or a prefix of either family; an IPv4-mapped IPv6 one becomes
// IPv4, so that it is listed and lifted as the clients it blocks are seen.
func parseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	bad := func() (netip.Prefix, error) {
		return netip.Prefix{}, fmt.Errorf("cidr %q: want an IP address or a CIDR such as 198.51.100.0/24 or 2001:db8::/32", s)
	}
	if s == "" || strings.Contains(s, "%") {
		return bad()
	}
	p, err := config.ParsePrefix(s)
	if err != nil || !p.IsValid() {
		return bad()
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// getTopSources answers the busiest sources, ?limit=N of them (default 20, at most 1000).
func (s *Server) getTopSources(w http.ResponseWriter, r *http.Request) {
	limit := defaultTopSources
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxTopSources {
			writeError(w, http.StatusBadRequest, "limit: want a number from 1 to "+strconv.Itoa(maxTopSources)+", got "+strconv.Quote(v))
			return
		}
		limit = n
	}
	denied := s.opts.Source.Denied()
	top := s.opts.Source.BusiestSources(limit)
	out := adminapi.TopSources{Sources: make([]adminapi.TopSource, 0, len(top))}
	for _, t := range top {
		blocked := false
		for _, e := range denied {
			if e.Prefix.Contains(t.Addr.Unmap()) {
				blocked = true
				break
			}
		}
		out.Sources = append(out.Sources, adminapi.TopSource{
			Frontend: t.Frontend, Source: t.Addr.Unmap().String(), Denied: blocked,
			OpenConnections: t.Open, Connections: t.Conns, Requests: t.Requests, Refused: t.Rejected,
			RequestRate: round2(t.RequestRate), ConnectionRate: round2(t.ConnRate),
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// round2 rounds a rate to two decimals, which is all a person reads of it.
func round2(v float64) float64 { return math.Round(v*100) / 100 }
