package vrrp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// keepalivedAdvert is an advert keepalived 2.2.7 (vrrp_version 3, advert_int 0.2) sent from
// 10.99.7.1 to 224.0.0.18 for VRID 51, priority 150 and the address 10.99.7.100, captured on a
// raw socket: the checksum includes the IPv4 pseudo-header, as RFC 5798 section 5.2.8 says.
const keepalivedAdvert = "31339601001434fd0a630764"

var (
	kaSrc = netip.MustParseAddr("10.99.7.1")
	kaVIP = netip.MustParseAddr("10.99.7.100")
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseKeepalivedAdvert(t *testing.T) {
	b := mustHex(t, keepalivedAdvert)
	a, err := Parse(b, kaSrc, MulticastGroup, 255)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Advert{VRID: 51, Priority: 150, MaxAdvertInterval: 20, Checksum: 0x34fd, Addrs: []netip.Addr{kaVIP}}
	if a.VRID != want.VRID || a.Priority != want.Priority || a.MaxAdvertInterval != want.MaxAdvertInterval ||
		a.Checksum != want.Checksum || !slices.Equal(a.Addrs, want.Addrs) {
		t.Errorf("Parse = %+v, want %+v", a, want)
	}
	if a.Interval() != 200*time.Millisecond {
		t.Errorf("Interval = %v, want 200ms", a.Interval())
	}
	// Encoding the same advert gives keepalived's bytes, checksum included.
	got, err := want.Marshal(kaSrc, MulticastGroup)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b) {
		t.Errorf("Marshal = %x, want %x", got, b)
	}
	// The checksum covers the pseudo-header: the same bytes from another source fail.
	if _, err := Parse(b, netip.MustParseAddr("10.99.7.2"), MulticastGroup, 255); !errors.Is(err, ErrChecksum) {
		t.Errorf("Parse from another source: err = %v, want ErrChecksum", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		a    Advert
		src  netip.Addr
		dst  netip.Addr
	}{
		{"one address multicast", Advert{VRID: 1, Priority: 100, MaxAdvertInterval: 100, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}}, netip.MustParseAddr("192.0.2.1"), MulticastGroup},
		{"three addresses unicast", Advert{VRID: 255, Priority: 254, MaxAdvertInterval: 4095, Addrs: []netip.Addr{
			netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")}},
			netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.8")},
		{"priority 0", Advert{VRID: 7, Priority: 0, MaxAdvertInterval: 1, Addrs: []netip.Addr{netip.MustParseAddr("10.1.1.1")}}, netip.MustParseAddr("10.1.1.2"), MulticastGroup},
		{"ipv6", Advert{VRID: 9, Priority: 50, MaxAdvertInterval: 100, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::10")}},
			netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::12")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.a.Marshal(tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != tt.a.Len() {
				t.Errorf("len = %d, Len() = %d", len(b), tt.a.Len())
			}
			if b[0] != 0x31 {
				t.Errorf("version/type byte = %#x, want 0x31", b[0])
			}
			if Checksum(b, tt.src, tt.dst) != 0 {
				t.Error("checksum over the marshalled advert is not zero")
			}
			got, err := Parse(b, tt.src, tt.dst, 255)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.VRID != tt.a.VRID || got.Priority != tt.a.Priority || got.MaxAdvertInterval != tt.a.MaxAdvertInterval || !slices.Equal(got.Addrs, tt.a.Addrs) {
				t.Errorf("round trip = %+v, want %+v", got, tt.a)
			}
			again, err := got.MarshalBinary()
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("MarshalBinary after Parse = %x, %v; want %x", again, err, b)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good := mustHex(t, keepalivedAdvert)
	mod := func(f func(b []byte) []byte) []byte { return f(slices.Clone(good)) }
	// fix recomputes the checksum so that only the intended defect remains.
	fix := func(b []byte) []byte {
		b[6], b[7] = 0, 0
		c := Checksum(b, kaSrc, MulticastGroup)
		b[6], b[7] = byte(c>>8), byte(c)
		return b
	}
	tests := []struct {
		name string
		b    []byte
		ttl  int
		want error
	}{
		{"ttl 254 (crossed a router)", good, 254, ErrTTL},
		{"ttl 64", good, 64, ErrTTL},
		{"empty", nil, 255, ErrShort},
		{"seven bytes", good[:7], 255, ErrShort},
		{"version 2", mod(func(b []byte) []byte { b[0] = 0x21; return fix(b) }), 255, ErrVersion},
		{"type 2", mod(func(b []byte) []byte { b[0] = 0x32; return fix(b) }), 255, ErrType},
		{"count beyond the packet", mod(func(b []byte) []byte { b[3] = 2; return fix(b) }), 255, ErrLength},
		{"truncated address", good[:10], 255, ErrLength},
		{"flipped bit", mod(func(b []byte) []byte { b[2] ^= 1; return b }), 255, ErrChecksum},
		{"flipped address bit", mod(func(b []byte) []byte { b[11] ^= 0x80; return b }), 255, ErrChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.b, kaSrc, MulticastGroup, tt.ttl); !errors.Is(err, tt.want) {
				t.Errorf("Parse: err = %v, want %v", err, tt.want)
			}
		})
	}
	// Reserved bits are ignored on receive but covered by the checksum.
	b := mod(func(b []byte) []byte { b[4] |= 0xf0; return fix(b) })
	a, err := Parse(b, kaSrc, MulticastGroup, 255)
	if err != nil || a.MaxAdvertInterval != 20 {
		t.Errorf("reserved bits set: %+v, %v; want interval 20 and no error", a, err)
	}
	// Trailing bytes after the addresses are allowed (and checksummed).
	b = mod(func(b []byte) []byte { return fix(append(b, 0, 0, 0, 0)) })
	if _, err := Parse(b, kaSrc, MulticastGroup, 255); err != nil {
		t.Errorf("trailing bytes: %v", err)
	}
}

func TestMarshalRefuses(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")
	for _, a := range []Advert{
		{Addrs: []netip.Addr{v4, v6}},
		{Addrs: []netip.Addr{{}}},
		{MaxAdvertInterval: 4096, Addrs: []netip.Addr{v4}},
		{Addrs: make([]netip.Addr, 256)},
	} {
		if _, err := a.MarshalBinary(); err == nil {
			t.Errorf("MarshalBinary(%+v) succeeded", a)
		}
	}
}

func TestCentiseconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want uint16
	}{
		{0, 1}, {time.Millisecond, 1}, {10 * time.Millisecond, 1}, {15 * time.Millisecond, 1},
		{time.Second, 100}, {40950 * time.Millisecond, 4095}, {time.Minute, 4095},
	}
	for _, tt := range tests {
		if got := Centiseconds(tt.d); got != tt.want {
			t.Errorf("Centiseconds(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

// FuzzParse feeds arbitrary bytes to the parser: it must never panic, and whatever it accepts
// must encode back to the bytes it read (up to the address list; trailing bytes are dropped).
// The seeds run as ordinary tests.
func FuzzParse(f *testing.F) {
	f.Add(mustHex(f, keepalivedAdvert), byte(255), false)
	f.Add(mustHex(f, "3101640100640000c0000210"), byte(255), false)
	f.Add(mustHex(f, "31010002006400000a0000010a000002"), byte(255), false)
	f.Add(mustHex(f, "3109320100640000"+"20010db8000000000000000000000010"), byte(255), true)
	f.Add([]byte{0x31}, byte(255), false)
	f.Add([]byte{}, byte(0), false)
	f.Add(mustHex(f, "21339601001434fd0a630764"), byte(255), false)
	f.Add(mustHex(f, "3133960f001434fd0a630764"), byte(255), false)
	f.Fuzz(func(t *testing.T, b []byte, ttl byte, v6 bool) {
		src, dst := kaSrc, MulticastGroup
		if v6 {
			src, dst = netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::12")
		}
		// Make half the inputs pass the checksum so the decoder's accept path is explored.
		if len(b) >= HeaderLen && ttl&1 == 1 {
			b[6], b[7] = 0, 0
			c := Checksum(b, src, dst)
			b[6], b[7] = byte(c>>8), byte(c)
			ttl = 255
		}
		a, err := Parse(b, src, dst, int(ttl))
		if err != nil {
			return
		}
		var u Advert
		if v6 {
			err = u.UnmarshalIPv6(b)
		} else {
			err = u.UnmarshalBinary(b)
		}
		if err != nil {
			t.Fatalf("Parse accepted what Unmarshal refuses: %v", err)
		}
		enc, err := a.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a parsed advert: %v", err)
		}
		// Equal except the reserved bits, which are not kept.
		want := slices.Clone(b[:len(enc)])
		want[4] &= 0x0f
		if !bytes.Equal(enc, want) {
			t.Fatalf("re-encoded %x, read %x", enc, want)
		}
	})
}
