package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a v2 header from its version/command and family bytes and the blocks after the
// length, which it computes.
func v2(verCmd, fam byte, blocks ...[]byte) []byte {
	body := bytes.Join(blocks, nil)
	b := append([]byte{}, v2Sig[:]...)
	b = append(b, verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// v2len is v2 with a length field that may disagree with the blocks.
func v2len(verCmd, fam byte, length uint16, blocks ...[]byte) []byte {
	b := v2(verCmd, fam, blocks...)
	binary.BigEndian.PutUint16(b[14:16], length)
	return b
}

func tlv(typ byte, value string) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint16(b, uint16(len(value)))
	return append(b, value...)
}

var (
	addrs4 = []byte{10, 0, 0, 1, 192, 168, 1, 2, 0x30, 0x39, 0x01, 0xbb} // 10.0.0.1:12345 -> 192.168.1.2:443
	addrs6 = append(append(append(netip.MustParseAddr("2001:db8::1").AsSlice(),
		netip.MustParseAddr("2001:db8::2").AsSlice()...), 0xff, 0xff), 0x00, 0x50) // [2001:db8::1]:65535 -> [2001:db8::2]:80
	addrsUnix = make([]byte, 216)
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

var (
	tcp4 = Header{Version: 1, Command: Proxy, Network: "tcp", Source: ap("10.0.0.1:12345"), Destination: ap("192.168.1.2:443")}
	tcp6 = Header{Version: 1, Command: Proxy, Network: "tcp", Source: ap("[2001:db8::1]:65535"), Destination: ap("[2001:db8::2]:80")}
)

func with(h Header, f func(*Header)) Header { f(&h); return h }

// validCases parse; n is the header length when input has bytes after the header.
var validCases = []struct {
	name string
	in   []byte
	want Header
	n    int
}{
	{name: "v1 tcp4", in: []byte("PROXY TCP4 10.0.0.1 192.168.1.2 12345 443\r\n"), want: tcp4},
	{name: "v1 tcp6", in: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 65535 80\r\n"), want: tcp6},
	{name: "v1 tcp6 uncompressed upper case", in: []byte("PROXY TCP6 2001:0DB8:0:0:0:0:0:1 2001:db8::2 65535 80\r\n"), want: tcp6},
	{name: "v1 tcp6 v4-mapped stays mapped", in: []byte("PROXY TCP6 ::ffff:10.0.0.1 ::ffff:192.168.1.2 1 2\r\n"),
		want: Header{Version: 1, Command: Proxy, Network: "tcp", Source: ap("[::ffff:10.0.0.1]:1"), Destination: ap("[::ffff:192.168.1.2]:2")}},
	{name: "v1 ports 0 and 65535", in: []byte("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
		want: Header{Version: 1, Command: Proxy, Network: "tcp", Source: ap("0.0.0.0:0"), Destination: ap("255.255.255.255:65535")}},
	{name: "v1 longest tcp6", in: []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		want: Header{Version: 1, Command: Proxy, Network: "tcp", Source: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Destination: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
	{name: "v1 unknown", in: []byte("PROXY UNKNOWN\r\n"), want: Header{Version: 1, Command: Local}},
	{name: "v1 unknown with addresses ignored", in: []byte("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"), want: Header{Version: 1, Command: Local}},
	{name: "v1 unknown with trailing space", in: []byte("PROXY UNKNOWN \r\n"), want: Header{Version: 1, Command: Local}},
	{name: "v1 exactly 107 bytes", in: []byte("PROXY UNKNOWN " + strings.Repeat("x", 107-16) + "\r\n"), want: Header{Version: 1, Command: Local}},
	{name: "v1 followed by payload", in: []byte("PROXY TCP4 10.0.0.1 192.168.1.2 12345 443\r\nGET / HTTP/1.1\r\n"), want: tcp4, n: 43},

	{name: "v2 tcp4", in: v2(0x21, 0x11, addrs4), want: with(tcp4, func(h *Header) { h.Version = 2 })},
	{name: "v2 udp4", in: v2(0x21, 0x12, addrs4), want: with(tcp4, func(h *Header) { h.Version, h.Network = 2, "udp" })},
	{name: "v2 tcp6", in: v2(0x21, 0x21, addrs6), want: with(tcp6, func(h *Header) { h.Version = 2 })},
	{name: "v2 udp6", in: v2(0x21, 0x22, addrs6), want: with(tcp6, func(h *Header) { h.Version, h.Network = 2, "udp" })},
	{name: "v2 tcp4 TLVs skipped", in: v2(0x21, 0x11, addrs4, tlv(0x01, "h2"), tlv(0x04, ""), tlv(0xe0, "custom")), want: with(tcp4, func(h *Header) { h.Version = 2 })},
	{name: "v2 tcp6 TLVs skipped", in: v2(0x21, 0x21, addrs6, tlv(0x02, "example.com")), want: with(tcp6, func(h *Header) { h.Version = 2 })},
	{name: "v2 local", in: v2(0x20, 0x00), want: Header{Version: 2, Command: Local}},
	{name: "v2 local with tcp4 addresses ignored", in: v2(0x20, 0x11, addrs4), want: Header{Version: 2, Command: Local}},
	{name: "v2 local family ignored", in: v2(0x20, 0xff, []byte("anything")), want: Header{Version: 2, Command: Local}},
	{name: "v2 local short block ignored", in: v2(0x20, 0x21, addrs4), want: Header{Version: 2, Command: Local}},
	{name: "v2 proxy unspec", in: v2(0x21, 0x00), want: Header{Version: 2, Command: Local}},
	{name: "v2 proxy unspec with block", in: v2(0x21, 0x00, []byte{1, 2, 3}), want: Header{Version: 2, Command: Local}},
	{name: "v2 unix stream", in: v2(0x21, 0x31, addrsUnix), want: Header{Version: 2, Command: Local}},
	{name: "v2 unix dgram TLV", in: v2(0x21, 0x32, addrsUnix, tlv(0x05, "id")), want: Header{Version: 2, Command: Local}},
	{name: "v2 largest accepted", in: v2(0x21, 0x11, addrs4, tlv(0x04, strings.Repeat("\x00", 4096-12-3))), want: with(tcp4, func(h *Header) { h.Version = 2 })},
	{name: "v2 followed by payload", in: append(v2(0x21, 0x11, addrs4), "\r\n\r\n\x00\r\nQUIT\n"...), want: with(tcp4, func(h *Header) { h.Version = 2 }), n: 28},
}

// invalidCases fail at once: none of them is a prefix of a valid header.
var invalidCases = []struct {
	name string
	in   []byte
}{
	{"http", []byte("GET / HTTP/1.1\r\n")},
	{"tls client hello", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")},
	{"ssh", []byte("SSH-2.0-OpenSSH_9.6\r\n")},
	{"lower case proxy", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n")},
	{"PROXY without space", []byte("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n")},
	{"double space after PROXY", []byte("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n")},
	{"double space between addresses", []byte("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n")},
	{"double space between ports", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n")},
	{"tab separator", []byte("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n")},
	{"lower case tcp4", []byte("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n")},
	{"TCP5", []byte("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n")},
	{"UDP4", []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n")},
	{"UNKNOWNX", []byte("PROXY UNKNOWNX\r\n")},
	{"empty protocol", []byte("PROXY \r\n")},
	{"TCP4 then CRLF", []byte("PROXY TCP4\r\n")},
	{"TCP4 with IPv6 address", []byte("PROXY TCP4 ::1 ::1 1 2\r\n")},
	{"TCP4 with v4-mapped address", []byte("PROXY TCP4 ::ffff:1.2.3.4 ::ffff:5.6.7.8 1 2\r\n")},
	{"TCP6 with IPv4 address", []byte("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n")},
	{"TCP6 with zone", []byte("PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n")},
	{"IPv4 leading zero", []byte("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n")},
	{"IPv4 octet 256", []byte("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n")},
	{"IPv4 three octets", []byte("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n")},
	{"IPv4 five octets", []byte("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n")},
	{"IPv4 hostname", []byte("PROXY TCP4 localhost 5.6.7.8 1 2\r\n")},
	{"IPv6 two ellipses", []byte("PROXY TCP6 1::2::3 ::1 1 2\r\n")},
	{"IPv6 five hex digits", []byte("PROXY TCP6 12345::1 ::1 1 2\r\n")},
	{"IPv6 too long", []byte("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n")},
	{"port 65536", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n")},
	{"port 99999", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n")},
	{"port leading zero", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n")},
	{"port 00", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n")},
	{"port six digits", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 000080\r\n")},
	{"port plus sign", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n")},
	{"port negative", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n")},
	{"port hex", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n")},
	{"missing port", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n")},
	{"extra field", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n")},
	{"trailing space", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n")},
	{"LF only", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")},
	{"CR without LF", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX")},
	{"unknown LF only", []byte("PROXY UNKNOWN\n")},
	{"unknown LF in rest", []byte("PROXY UNKNOWN abc\ndef\r\n")},
	{"unknown CR without LF", []byte("PROXY UNKNOWN abc\rdef\r\n")},
	{"v1 too long without CRLF", []byte("PROXY UNKNOWN " + strings.Repeat("x", 200))},
	{"v1 108 bytes", []byte("PROXY UNKNOWN " + strings.Repeat("x", 108-16) + "\r\n")},
	{"v1 tcp6 over 107 bytes", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 1 2\r\n")},

	{"v2 bad signature", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 12)},
	{"v2 signature without NUL", []byte("\r\n\r\nGET / HTTP/1.1\r\n")},
	{"v2 version 1", v2(0x11, 0x11, addrs4)},
	{"v2 version 3", v2(0x31, 0x11, addrs4)},
	{"v2 version 0", v2(0x01, 0x11, addrs4)},
	{"v2 command 2", v2(0x22, 0x11, addrs4)},
	{"v2 command 15", v2(0x2f, 0x11, addrs4)},
	{"v2 family 4", v2(0x21, 0x41, addrs4)},
	{"v2 family inet protocol unspec", v2(0x21, 0x10, addrs4)},
	{"v2 family inet protocol 3", v2(0x21, 0x13, addrs4)},
	{"v2 family unspec protocol stream", v2(0x21, 0x01)},
	{"v2 family unspec protocol dgram", v2(0x21, 0x02)},
	{"v2 length short of IPv4", v2len(0x21, 0x11, 11, addrs4)},
	{"v2 IPv6 family with IPv4 block", v2(0x21, 0x21, addrs4)},
	{"v2 unix short", v2(0x21, 0x31, addrs6)},
	{"v2 length over cap", v2len(0x21, 0x11, 4097, addrs4)},
	{"v2 length 65535", v2len(0x21, 0x11, 65535, addrs4)},
	{"v2 TLV truncated header", v2(0x21, 0x11, addrs4, []byte{0x01, 0x00})},
	{"v2 TLV value past length", v2(0x21, 0x11, addrs4, tlv(0x01, "h2")[:4])},
	{"v2 TLV then junk byte", v2(0x21, 0x11, addrs4, tlv(0x01, "h2"), []byte{0})},
}

// garbage are non-PROXY openings that must be rejected from their first byte.
var garbage = []string{"GET / HTTP/1.1\r\n", "\x16\x03\x01", "SSH-2.0", "\x00", " PROXY", "\n", "\x80"}

func TestParseValid(t *testing.T) {
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			wantN := tc.n
			if wantN == 0 {
				wantN = len(tc.in)
			}
			if n != wantN {
				t.Errorf("n = %d, want %d", n, wantN)
			}
			if h != tc.want {
				t.Errorf("got %+v\nwant %+v", h, tc.want)
			}
			var u Header
			err = u.UnmarshalBinary(tc.in)
			if tc.n == 0 && (err != nil || u != tc.want) {
				t.Errorf("UnmarshalBinary = %+v, %v", u, err)
			}
			if tc.n != 0 && !errors.Is(err, ErrInvalid) {
				t.Errorf("UnmarshalBinary with trailing data: err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	for _, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v, n=%d", h, n)
			}
			if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrIncomplete) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "proxyproto: ") {
				t.Errorf("err %q lacks the package prefix", err)
			}
			if h != (Header{}) || n != 0 {
				t.Errorf("failed Parse returned %+v, %d", h, n)
			}
			var u Header
			if err := u.UnmarshalBinary(tc.in); err == nil {
				t.Errorf("UnmarshalBinary accepted it")
			}
		})
	}
}

// TestParseIncomplete checks the contract a socket reader relies on: every proper prefix of a
// valid header asks for more, so no valid client is rejected for arriving in pieces.
func TestParseIncomplete(t *testing.T) {
	for _, tc := range validCases {
		_, n, _ := Parse(tc.in)
		for k := 0; k < n; k++ {
			if _, _, err := Parse(tc.in[:k]); err != ErrIncomplete {
				t.Errorf("%s: prefix of %d bytes: err = %v, want ErrIncomplete", tc.name, k, err)
			}
			var u Header
			if err := u.UnmarshalBinary(tc.in[:k]); !errors.Is(err, ErrIncomplete) {
				t.Errorf("%s: UnmarshalBinary of %d bytes: err = %v, want ErrIncomplete", tc.name, k, err)
			}
		}
	}
}

// TestParseRejectsEarly checks the other half: a client that is not speaking PROXY is rejected
// as soon as its bytes rule a header out, not after a read timeout.
func TestParseRejectsEarly(t *testing.T) {
	for _, g := range garbage {
		if _, _, err := Parse([]byte(g[:1])); !errors.Is(err, ErrInvalid) {
			t.Errorf("first byte of %q: err = %v, want ErrInvalid", g, err)
		}
	}
	early := []struct{ in, why string }{
		{"PROXY X", "protocol cannot start with X"},
		{"PROXY TCP4 1.2.3.4x", "x in an IPv4 address"},
		{"PROXY TCP4 1.2.3.4 5", "need not wait: ok so far"}, // checked below as incomplete
		{"PROXY TCP4 1234567890123456", "IPv4 text longer than 15"},
		{"PROXY TCP6 g", "g in an IPv6 address"},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 0", "need not wait: ok so far"},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 01", "leading zero"},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 70000", "port over 65535"},
		{"PROXY UNKNOWN x\n", "LF before CR"},
		{"\r\n\r\n\x00\r\nQUIT\n\x12", "version 1 nibble"},
		{"\r\n\r\n\x00\r\nQUIT\n\x23", "command 3"},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x51", "family 5"},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0b", "length too short for IPv4"},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x10\x01", "length over the cap"},
	}
	for _, e := range early {
		_, _, err := Parse([]byte(e.in))
		if strings.HasPrefix(e.why, "need not wait") {
			if err != ErrIncomplete {
				t.Errorf("%q: err = %v, want ErrIncomplete", e.in, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%q (%s): err = %v, want ErrInvalid", e.in, e.why, err)
		}
	}
	// A long v1 line is rejected once 107 bytes are in, not later.
	long := []byte("PROXY UNKNOWN " + strings.Repeat("x", 93))
	if _, _, err := Parse(long); !errors.Is(err, ErrInvalid) {
		t.Errorf("107 bytes without CRLF: err = %v, want ErrInvalid", err)
	}
	if _, _, err := Parse(long[:106]); err != ErrIncomplete {
		t.Errorf("106 bytes without CRLF: err = %v, want ErrIncomplete", err)
	}
}

var marshalCases = []struct {
	name string
	h    Header
	want []byte
}{
	{"v1 tcp4", tcp4, []byte("PROXY TCP4 10.0.0.1 192.168.1.2 12345 443\r\n")},
	{"v1 tcp6", tcp6, []byte("PROXY TCP6 2001:db8::1 2001:db8::2 65535 80\r\n")},
	{"v1 v4-mapped is TCP6", Header{Version: 1, Command: Proxy, Network: "tcp", Source: ap("[::ffff:1.2.3.4]:1"), Destination: ap("[::ffff:5.6.7.8]:0")},
		[]byte("PROXY TCP6 ::ffff:1.2.3.4 ::ffff:5.6.7.8 1 0\r\n")},
	{"v1 local", Header{Version: 1, Command: Local}, []byte("PROXY UNKNOWN\r\n")},
	{"v1 proxy without addresses", Header{Version: 1, Command: Proxy}, []byte("PROXY UNKNOWN\r\n")},
	{"v2 tcp4", with(tcp4, func(h *Header) { h.Version = 2 }), v2(0x21, 0x11, addrs4)},
	{"v2 udp4", with(tcp4, func(h *Header) { h.Version, h.Network = 2, "udp" }), v2(0x21, 0x12, addrs4)},
	{"v2 tcp6", with(tcp6, func(h *Header) { h.Version = 2 }), v2(0x21, 0x21, addrs6)},
	{"v2 udp6", with(tcp6, func(h *Header) { h.Version, h.Network = 2, "udp" }), v2(0x21, 0x22, addrs6)},
	{"v2 local", Header{Version: 2, Command: Local}, v2(0x20, 0x00)},
	{"v2 proxy without addresses", Header{Version: 2, Command: Proxy}, v2(0x21, 0x00)},
}

func TestMarshal(t *testing.T) {
	for _, tc := range marshalCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.h.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			app, err := tc.h.AppendBinary([]byte("abc"))
			if err != nil || string(app) != "abc"+string(tc.want) {
				t.Errorf("AppendBinary = %q, %v", app, err)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	cases := []struct {
		name string
		h    Header
	}{
		{"version 0", with(tcp4, func(h *Header) { h.Version = 0 })},
		{"version 3", with(tcp4, func(h *Header) { h.Version = 3 })},
		{"command 2", with(tcp4, func(h *Header) { h.Command = 2 })},
		{"v1 udp", with(tcp4, func(h *Header) { h.Network = "udp" })},
		{"network unix", with(tcp4, func(h *Header) { h.Network = "unix" })},
		{"network tcp4", with(tcp4, func(h *Header) { h.Network = "tcp4" })},
		{"addresses without network", with(tcp4, func(h *Header) { h.Network = "" })},
		{"network without addresses", Header{Version: 2, Command: Proxy, Network: "tcp"}},
		{"source only", with(tcp4, func(h *Header) { h.Destination = netip.AddrPort{} })},
		{"port without address", with(tcp4, func(h *Header) { h.Source = netip.AddrPortFrom(netip.Addr{}, 80) })},
		{"mixed families", with(tcp4, func(h *Header) { h.Destination = ap("[::1]:80") })},
		{"v4 and v4-mapped", with(tcp4, func(h *Header) { h.Destination = ap("[::ffff:1.2.3.4]:80") })},
		{"zone", with(tcp6, func(h *Header) { h.Source = ap("[fe80::1%eth0]:80") })},
		{"local with addresses", with(tcp4, func(h *Header) { h.Command = Local })},
		{"local with network", Header{Version: 2, Command: Local, Network: "tcp"}},
	}
	for _, tc := range cases {
		for _, v := range []int{1, 2} {
			if tc.name == "v1 udp" && v == 2 {
				continue // UDP is fine in v2
			}
			h := tc.h
			if h.Version != 0 && h.Version != 3 {
				h.Version = v
			}
			b, err := h.MarshalBinary()
			if err == nil {
				t.Errorf("%s v%d: marshaled to %q", tc.name, v, b)
				continue
			}
			if !strings.HasPrefix(err.Error(), "proxyproto: ") {
				t.Errorf("%s: err %q lacks the package prefix", tc.name, err)
			}
			if app, err := h.AppendBinary([]byte("abc")); err == nil || string(app) != "abc" {
				t.Errorf("%s: failed AppendBinary = %q, %v; want input unchanged", tc.name, app, err)
			}
		}
	}
}

// TestRoundTrip checks that what we send is what a receiver (ourselves) reads back.
func TestRoundTrip(t *testing.T) {
	for _, tc := range marshalCases {
		b, err := tc.h.MarshalBinary()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got Header
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: UnmarshalBinary(%q): %v", tc.name, b, err)
		}
		if want := canonical(tc.h); got != want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, want)
		}
	}
	for _, tc := range validCases {
		h, _, _ := Parse(tc.in)
		b, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("%s: re-marshal: %v", tc.name, err)
		}
		var got Header
		if err := got.UnmarshalBinary(b); err != nil || got != h {
			t.Errorf("%s: re-parsed %q as %+v, %v; want %+v", tc.name, b, got, err, h)
		}
	}
}

// canonical is what a marshaled header parses back as: a Proxy header without addresses
// becomes Local, which tells the receiver the same thing.
func canonical(h Header) Header {
	if h.Command == Proxy && h.Network == "" {
		h.Command = Local
	}
	return h
}

func TestCommandString(t *testing.T) {
	if Local.String() != "LOCAL" || Proxy.String() != "PROXY" || Command(7).String() != "Command(7)" {
		t.Errorf("got %s %s %s", Local, Proxy, Command(7))
	}
}

func TestAllocs(t *testing.T) {
	inputs := map[string][]byte{
		"v1 tcp4":    []byte("PROXY TCP4 10.0.0.1 192.168.1.2 12345 443\r\n"),
		"v1 tcp6":    []byte("PROXY TCP6 2001:db8::1 ::ffff:192.168.1.2 65535 80\r\n"),
		"v1 unknown": []byte("PROXY UNKNOWN\r\n"),
		"v2 tcp4":    v2(0x21, 0x11, addrs4, tlv(0x01, "h2")),
		"v2 tcp6":    v2(0x21, 0x21, addrs6),
		"v2 local":   v2(0x20, 0x00),
		"garbage":    []byte("GET / HTTP/1.1\r\n"),
		"incomplete": []byte("PROXY TCP4 10.0.0.1 192.16"),
	}
	for name, in := range inputs {
		if a := testing.AllocsPerRun(100, func() { Parse(in) }); a != 0 {
			t.Errorf("Parse %s: %v allocs", name, a)
		}
	}
	buf := make([]byte, 0, 256)
	for _, tc := range marshalCases {
		h := tc.h
		if a := testing.AllocsPerRun(100, func() { h.AppendBinary(buf[:0]) }); a != 0 {
			t.Errorf("AppendBinary %s: %v allocs", tc.name, a)
		}
	}
}

// TestParseIPAgainstNetip pins the hand-written address parsers to netip.ParseAddr.
func TestParseIPAgainstNetip(t *testing.T) {
	for _, s := range ipCorpus {
		checkIP(t, s)
	}
}

var ipCorpus = []string{
	"", ".", "0.0.0.0", "1.2.3.4", "255.255.255.255", "256.1.1.1", "01.1.1.1", "1.1.1", "1.1.1.1.",
	".1.1.1.1", "1..1.1", "1.1.1.1.1", "1.1.1.01", "1.1.1.00", "1.1.1.0",
	"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9",
	"1:2:3:4:5:6:7", "1::2::3", ":::", ":1::", "1:", ":1", "12345::", "0001::", "fFfF::", "::ffff:1.2.3.4",
	"::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "1::1.2.3.4",
	"1::5:6:7:1.2.3.4", "::ffff:1.2.3", "::ffff:01.2.3.4", "1.2.3.4::", "::1.2.3.4:1", "fe80::1%eth0",
	"1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1::2:3:4:5:6:7:8", "::g", "a:b:c:d:e:f:a:b",
}

func checkIP(t *testing.T, s string) {
	t.Helper()
	want, err := netip.ParseAddr(s)
	ok := err == nil && want.Zone() == ""
	want4 := ok && want.Is4()
	want6 := ok && want.Is6()
	got4, ok4 := parseIPv4([]byte(s))
	got6, ok6 := parseIPv6([]byte(s))
	if ok4 != want4 || (ok4 && got4 != want) {
		t.Errorf("parseIPv4(%q) = %v, %v; netip says %v, %v", s, got4, ok4, want, err)
	}
	if ok6 != want6 || (ok6 && got6 != want) {
		t.Errorf("parseIPv6(%q) = %v, %v; netip says %v, %v", s, got6, ok6, want, err)
	}
}

func TestFor(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst string
		want     Header
	}{
		{"ipv4", "10.0.0.1:1000", "10.0.0.2:80", Header{Version: 2, Command: Proxy, Network: "tcp",
			Source: netip.MustParseAddrPort("10.0.0.1:1000"), Destination: netip.MustParseAddrPort("10.0.0.2:80")}},
		{"mapped is unmapped", "[::ffff:10.0.0.1]:1000", "10.0.0.2:80", Header{Version: 2, Command: Proxy, Network: "tcp",
			Source: netip.MustParseAddrPort("10.0.0.1:1000"), Destination: netip.MustParseAddrPort("10.0.0.2:80")}},
		{"families differ", "[2001:db8::1]:1000", "10.0.0.2:80", Header{Version: 2, Command: Local}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := For(2, netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst))
			if got != tc.want {
				t.Errorf("For = %+v, want %+v", got, tc.want)
			}
			if _, err := got.MarshalBinary(); err != nil {
				t.Errorf("marshal: %v", err)
			}
		})
	}
	if got := For(1, netip.AddrPort{}, netip.MustParseAddrPort("10.0.0.2:80")); got.Command != Local {
		t.Errorf("unknown source: %+v", got)
	}
}
