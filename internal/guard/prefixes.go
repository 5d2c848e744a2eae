package guard

import (
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// PrefixSet answers whether an address lies in any of a set of prefixes, with one map lookup per
// distinct prefix length in the set (a handful in practice), whatever the number of prefixes.
// Immutable once built.
type PrefixSet struct {
	v4, v6 []lengthSet // by prefix length, longest first
}

type lengthSet struct {
	bits int
	m    map[netip.Prefix]struct{}
}

// NewPrefixSet builds a set of the given prefixes (masked; IPv4-mapped IPv6 ones unmapped).
func NewPrefixSet(ps []netip.Prefix) *PrefixSet {
	s := &PrefixSet{}
	for _, p := range ps {
		addr := p.Addr()
		bits := p.Bits()
		if addr.Is4In6() {
			addr, bits = addr.Unmap(), max(bits-96, 0)
		}
		p = netip.PrefixFrom(addr, bits).Masked()
		list := &s.v6
		if addr.Is4() {
			list = &s.v4
		}
		i := slices.IndexFunc(*list, func(l lengthSet) bool { return l.bits == bits })
		if i < 0 {
			*list = append(*list, lengthSet{bits: bits, m: map[netip.Prefix]struct{}{}})
			i = len(*list) - 1
		}
		(*list)[i].m[p] = struct{}{}
	}
	for _, list := range [][]lengthSet{s.v4, s.v6} {
		sort.Slice(list, func(i, j int) bool { return list[i].bits > list[j].bits })
	}
	return s
}

// Contains reports whether addr is in the set. A nil set contains nothing.
func (s *PrefixSet) Contains(addr netip.Addr) bool {
	if s == nil {
		return false
	}
	addr = addr.Unmap()
	list := s.v6
	if addr.Is4() {
		list = s.v4
	}
	for _, l := range list {
		p, _ := addr.Prefix(l.bits)
		if _, ok := l.m[p]; ok {
			return true
		}
	}
	return false
}

// Empty reports whether the set holds no prefix.
func (s *PrefixSet) Empty() bool { return s == nil || len(s.v4)+len(s.v6) == 0 }

// DenyList is the live list of blocked sources (POST /api/deny), shared by every frontend of the
// process. Entries expire by themselves. Lookups read an immutable snapshot; changes rebuild it.
type DenyList struct {
	mu      sync.Mutex
	entries map[netip.Prefix]time.Time // expiry; zero: never
	snap    atomic.Pointer[denySnapshot]
}

// DenyEntry is one blocked prefix.
type DenyEntry struct {
	Prefix  netip.Prefix
	Expires time.Time // zero: until lifted
}

type denySnapshot struct {
	set  *PrefixSet
	next time.Time // the earliest expiry; zero: none
}

// NewDenyList returns an empty list.
func NewDenyList() *DenyList {
	d := &DenyList{entries: map[netip.Prefix]time.Time{}}
	d.snap.Store(&denySnapshot{})
	return d
}

// Add blocks p for ttl (0: until Remove).
func (d *DenyList) Add(p netip.Prefix, ttl time.Duration, now time.Time) {
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl)
	}
	d.mu.Lock()
	d.entries[p.Masked()] = exp
	d.rebuild(now)
	d.mu.Unlock()
}

// Remove lifts the block of p; it reports whether p was blocked.
func (d *DenyList) Remove(p netip.Prefix, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p = p.Masked()
	if _, ok := d.entries[p]; !ok {
		return false
	}
	delete(d.entries, p)
	d.rebuild(now)
	return true
}

// Entries lists the blocks in force, soonest expiry last.
func (d *DenyList) Entries(now time.Time) []DenyEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rebuild(now)
	out := make([]DenyEntry, 0, len(d.entries))
	for p, exp := range d.entries {
		out = append(out, DenyEntry{Prefix: p, Expires: exp})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Expires.IsZero() != b.Expires.IsZero() {
			return a.Expires.IsZero()
		}
		if !a.Expires.Equal(b.Expires) {
			return a.Expires.After(b.Expires)
		}
		return a.Prefix.String() < b.Prefix.String()
	})
	return out
}

// Denied reports whether addr is blocked at now.
func (d *DenyList) Denied(addr netip.Addr, now time.Time) bool {
	if d == nil {
		return false
	}
	s := d.snap.Load()
	if !s.next.IsZero() && !now.Before(s.next) {
		d.mu.Lock()
		d.rebuild(now)
		d.mu.Unlock()
		s = d.snap.Load()
	}
	return s.set.Contains(addr)
}

// rebuild drops expired entries and publishes a new snapshot; d.mu is held.
func (d *DenyList) rebuild(now time.Time) {
	var next time.Time
	ps := make([]netip.Prefix, 0, len(d.entries))
	for p, exp := range d.entries {
		if !exp.IsZero() {
			if !now.Before(exp) {
				delete(d.entries, p)
				continue
			}
			if next.IsZero() || exp.Before(next) {
				next = exp
			}
		}
		ps = append(ps, p)
	}
	var set *PrefixSet
	if len(ps) > 0 {
		set = NewPrefixSet(ps)
	}
	d.snap.Store(&denySnapshot{set: set, next: next})
}
