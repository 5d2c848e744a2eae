package balance

import (
	"net/netip"

	"github.com/waage/waage/internal/backend"
)

// The hash is 64-bit FNV-1a followed by the splitmix64 finalizer. FNV-1a alone is fast and fixed
// forever, but its high bits mix poorly for short, similar inputs ("s1#0", "s1#1", 10.0.0.1,
// 10.0.0.2), which would clump points on the ring; the finalizer spreads every input bit over the
// whole word. Both are fixed constants with no seed, so a key hashes the same in every process,
// on every machine and after every restart, which the hash ring and sticky cookies rely on
// (hash/maphash would be seeded per process).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// mix is the splitmix64 finalizer: a bijection on uint64, so it adds no collisions.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func fnvBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// HashBytes hashes b into a key for Pick (hash algorithm: a URI, a header value, a cookie). It is
// stable across processes, machines and versions of waage, so keys computed by different
// instances behind the same VIP land on the same server.
func HashBytes(b []byte) uint64 { return mix(fnvBytes(fnvOffset, b)) }

// HashString is HashBytes for a string, without converting (and allocating): HashString(s) ==
// HashBytes([]byte(s)).
func HashString(s string) uint64 { return mix(fnvString(fnvOffset, s)) }

// HashAddr hashes a client address into a key for source_ip_hash. It hashes the 16-byte form, so
// an IPv4 client hashes the same whether a dual-stack listener reports 192.0.2.1 or
// ::ffff:192.0.2.1, and it ignores the IPv6 zone, which names the local interface, not the
// client. The zero Addr hashes like ::.
func HashAddr(ip netip.Addr) uint64 {
	a := ip.As16()
	return HashBytes(a[:])
}

// cookieHash is HashString(backendName + "\x00" + name) without building the string. The NUL
// keeps backend "a", server "bc" apart from backend "ab", server "c".
func cookieHash(backendName, name string) uint64 {
	h := fnvString(fnvOffset, backendName)
	h *= fnvPrime // h ^= 0
	return mix(fnvString(h, name))
}

const hexDigits = "0123456789abcdef"

// CookieValue is the sticky-cookie value that names s: 16 lowercase hex digits of the hash of
// its backend and server names. It depends on nothing else (not the address, not the position
// in the config, not the process), so a session stays pinned across reloads, restarts, a moved
// address and every node of a cluster; and it is opaque, so clients learn no server names.
func CookieValue(s *backend.Server) string {
	h := cookieHash(s.Backend, s.Name)
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hexDigits[h&0xf]
		h >>= 4
	}
	return string(b[:])
}

// parseCookie decodes exactly what CookieValue produces and rejects anything else.
func parseCookie(v string) (uint64, bool) {
	if len(v) != 16 {
		return 0, false
	}
	var h uint64
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		default:
			return 0, false
		}
		h = h<<4 | uint64(c)
	}
	return h, true
}

// ServerByCookie returns the server among servers whose CookieValue is value, or nil. It does
// not check the server's state: the caller decides with AcceptsPinned, because a draining
// server still serves the sessions pinned to it. It scans the list and hashes each name without
// allocating; for long lists on a hot path build a CookieIndex once per reload instead.
func ServerByCookie(servers []*backend.Server, value string) *backend.Server {
	h, ok := parseCookie(value)
	if !ok {
		return nil
	}
	for _, s := range servers {
		if s != nil && cookieHash(s.Backend, s.Name) == h {
			return s
		}
	}
	return nil
}

// CookieIndex maps cookie values to servers in one map lookup. Build it with NewCookieIndex
// alongside the Balancer, since both share the server list fixed at reload time. It is
// read-only after construction, so it is safe for concurrent use; the zero value and nil find
// nothing.
type CookieIndex struct {
	m map[uint64]*backend.Server
}

// NewCookieIndex indexes servers by CookieValue. If two servers share backend and server name,
// the first one wins, as in ServerByCookie.
func NewCookieIndex(servers []*backend.Server) *CookieIndex {
	x := &CookieIndex{m: make(map[uint64]*backend.Server, len(servers))}
	for _, s := range servers {
		if s == nil {
			continue
		}
		h := cookieHash(s.Backend, s.Name)
		if _, dup := x.m[h]; !dup {
			x.m[h] = s
		}
	}
	return x
}

// Server returns the server whose CookieValue is value, or nil; like ServerByCookie it leaves
// the state check (AcceptsPinned) to the caller.
func (x *CookieIndex) Server(value string) *backend.Server {
	if x == nil {
		return nil
	}
	h, ok := parseCookie(value)
	if !ok {
		return nil
	}
	return x.m[h]
}
