package balance

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/waage/waage/internal/backend"
)

// TestHashGolden pins the hash function: keys must not change between versions, or an upgrade
// would reshuffle every hash-balanced client and invalidate every sticky cookie. The values
// were checked against an independent implementation (FNV-1a 64 then splitmix64's finalizer).
func TestHashGolden(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint64
	}{
		{name: "empty", in: "", want: 0xf52a15e9a9b5e89b},
		{name: "one byte", in: "a", want: 0x02c0bdbf481420f8},
		{name: "ring point", in: "s1#0", want: 0x12384b7dddaf5f64},
		{name: "uri", in: "/index.html", want: 0xf6ad651c57d64427},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HashString(tt.in); got != tt.want {
				t.Errorf("HashString(%q) = %#x, want %#x", tt.in, got, tt.want)
			}
			if got := HashBytes([]byte(tt.in)); got != tt.want {
				t.Errorf("HashBytes(%q) = %#x, want %#x", tt.in, got, tt.want)
			}
		})
	}
}

func TestHashAddr(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name string
		x, y netip.Addr
		same bool
	}{
		{name: "IPv4 and its IPv4-mapped form", x: a("192.0.2.1"), y: a("::ffff:192.0.2.1"), same: true},
		{name: "zone ignored", x: a("fe80::1%eth0"), y: a("fe80::1"), same: true},
		{name: "neighbours differ", x: a("192.0.2.1"), y: a("192.0.2.2"), same: false},
		{name: "IPv6 differs from IPv4", x: a("::192.0.2.1"), y: a("192.0.2.1"), same: false},
		{name: "zero Addr is ::", x: netip.Addr{}, y: a("::"), same: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HashAddr(tt.x) == HashAddr(tt.y); got != tt.same {
				t.Errorf("HashAddr(%v) == HashAddr(%v) is %v, want %v", tt.x, tt.y, got, tt.same)
			}
		})
	}
	if got, want := HashAddr(a("192.0.2.1")), uint64(0x395c5bc678c14723); got != want {
		t.Errorf("HashAddr(192.0.2.1) = %#x, want %#x (pinned)", got, want)
	}
}

func TestHashNoAllocs(t *testing.T) {
	b := []byte("/some/path?q=1")
	ip := netip.MustParseAddr("2001:db8::1")
	var sink uint64
	if n := testing.AllocsPerRun(100, func() {
		sink += HashString("/some/path") + HashBytes(b) + HashAddr(ip)
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
	_ = sink
}

func TestCookieValue(t *testing.T) {
	s1 := backend.NewServer("web", "s1", "127.0.0.1:9001")
	if got, want := CookieValue(s1), "4f58f397d10b4fd5"; got != want {
		t.Errorf("CookieValue(web/s1) = %q, want %q (pinned: cookies must survive upgrades)", got, want)
	}
	if got, want := CookieValue(s1), hex16(HashString("web\x00s1")); got != want {
		t.Errorf("CookieValue = %q, want HashString(backend+NUL+name) = %q", got, want)
	}
	tests := []struct {
		name string
		a, b *backend.Server
		same bool
	}{
		{name: "address does not matter", a: s1, b: backend.NewServer("web", "s1", "10.9.9.9:80"), same: true},
		{name: "name matters", a: s1, b: backend.NewServer("web", "s2", "127.0.0.1:9001"), same: false},
		{name: "backend matters", a: s1, b: backend.NewServer("api", "s1", "127.0.0.1:9001"), same: false},
		{name: "names are not concatenated ambiguously", a: backend.NewServer("a", "bc", ""), b: backend.NewServer("ab", "c", ""), same: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CookieValue(tt.a) == CookieValue(tt.b); got != tt.same {
				t.Errorf("CookieValue(%v) == CookieValue(%v) is %v, want %v", tt.a, tt.b, got, tt.same)
			}
		})
	}
}

func hex16(h uint64) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 16)
	for i := 15; i >= 0; i-- {
		b[i] = digits[h&0xf]
		h >>= 4
	}
	return string(b)
}

func TestServerByCookie(t *testing.T) {
	ss := newServers(1, 1, 1)
	ss[1].SetState(backend.Drain) // lookups do not judge state
	// The same servers after a reload or restart: new values, same identity.
	restarted := newServers(1, 1, 1)
	ix := NewCookieIndex(ss)
	tests := []struct {
		name  string
		value string
		want  *backend.Server
	}{
		{name: "first", value: CookieValue(ss[0]), want: ss[0]},
		{name: "draining server still found", value: CookieValue(ss[1]), want: ss[1]},
		{name: "value from before a restart", value: CookieValue(restarted[2]), want: ss[2]},
		{name: "unknown", value: CookieValue(backend.NewServer("web", "s9", "")), want: nil},
		{name: "empty", value: "", want: nil},
		{name: "uppercase is not what we issue", value: strings.ToUpper(CookieValue(ss[0])), want: nil},
		{name: "too short", value: CookieValue(ss[0])[:15], want: nil},
		{name: "too long", value: CookieValue(ss[0]) + "0", want: nil},
		{name: "not hex", value: "zzzzzzzzzzzzzzzz", want: nil},
		{name: "server name is not a value", value: "s1", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ServerByCookie(ss, tt.value); got != tt.want {
				t.Errorf("ServerByCookie(%q) = %v, want %v", tt.value, got, tt.want)
			}
			if got := ix.Server(tt.value); got != tt.want {
				t.Errorf("CookieIndex.Server(%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
	var nilIndex *CookieIndex
	if got := nilIndex.Server(CookieValue(ss[0])); got != nil {
		t.Errorf("nil index found %v", got)
	}
	if got := (&CookieIndex{}).Server(CookieValue(ss[0])); got != nil {
		t.Errorf("zero index found %v", got)
	}
	if got := ServerByCookie([]*backend.Server{nil, ss[0]}, CookieValue(ss[0])); got != ss[0] {
		t.Errorf("ServerByCookie with a nil entry = %v", got)
	}
	if got := NewCookieIndex([]*backend.Server{nil, ss[0]}).Server(CookieValue(ss[0])); got != ss[0] {
		t.Errorf("CookieIndex with a nil entry = %v", got)
	}
}

func TestCookieDuplicateFirstWins(t *testing.T) {
	a := backend.NewServer("web", "s1", "10.0.0.1:80")
	b := backend.NewServer("web", "s1", "10.0.0.2:80")
	v := CookieValue(a)
	if got := ServerByCookie([]*backend.Server{a, b}, v); got != a {
		t.Errorf("ServerByCookie = %v, want the first", got.Address)
	}
	if got := NewCookieIndex([]*backend.Server{a, b}).Server(v); got != a {
		t.Errorf("CookieIndex.Server = %v, want the first", got.Address)
	}
}

func TestCookieLookupNoAllocs(t *testing.T) {
	ss := newServers(1, 1, 1, 1, 1)
	ix := NewCookieIndex(ss)
	v := CookieValue(ss[4])
	if n := testing.AllocsPerRun(100, func() {
		if ServerByCookie(ss, v) != ss[4] || ix.Server(v) != ss[4] {
			t.Fatal("lookup failed")
		}
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}
