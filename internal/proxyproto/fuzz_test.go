package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzParse checks that no input crashes Parse, that its answers are consistent with each other
// (an accepted header's prefixes are all incomplete; an incomplete input's prefixes are too),
// that Read agrees with Parse, and that an accepted header re-marshals to an equal header.
func FuzzParse(f *testing.F) {
	for _, tc := range validCases {
		f.Add(tc.in)
	}
	for _, tc := range invalidCases {
		f.Add(tc.in)
	}
	for _, g := range garbage {
		f.Add([]byte(g))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if n < 0 || n > len(b) {
			t.Fatalf("n = %d for %d bytes", n, len(b))
		}
		checkRead(t, b, h, n, err)
		switch {
		case err == ErrIncomplete:
			if n != 0 || h != (Header{}) {
				t.Fatalf("incomplete with %+v, %d", h, n)
			}
			for k := range b {
				if _, _, err := Parse(b[:k]); err != ErrIncomplete {
					t.Fatalf("%q incomplete but its prefix %q gives %v", b, b[:k], err)
				}
			}
			return
		case err != nil:
			if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "proxyproto: ") {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if n != 0 || h != (Header{}) {
				t.Fatalf("error with %+v, %d", h, n)
			}
			return
		}
		if n == 0 {
			t.Fatalf("accepted an empty header")
		}
		for k := 0; k < n; k++ {
			if _, _, err := Parse(b[:k]); err != ErrIncomplete {
				t.Fatalf("header is %d bytes but its %d-byte prefix gives %v", n, k, err)
			}
		}
		if (h.Command == Proxy) != (h.Network != "") || (h.Command == Proxy) != h.Source.IsValid() {
			t.Fatalf("inconsistent header %+v", h)
		}
		re, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("re-marshal %+v: %v", h, err)
		}
		var h2 Header
		if err := h2.UnmarshalBinary(re); err != nil || h2 != h {
			t.Fatalf("%+v re-marshaled to %q, which parses as %+v, %v", h, re, h2, err)
		}
	})
}

// checkRead checks that Read, fed b one byte at a time, says what Parse said about b.
func checkRead(t *testing.T, b []byte, h Header, n int, err error) {
	t.Helper()
	r := iotest.OneByteReader(bytes.NewReader(b))
	rh, rest, rerr := Read(r, nil)
	switch {
	case err == nil:
		if rerr != nil || rh != h || !bytes.HasPrefix(b[n:], rest) {
			t.Fatalf("Read = %+v, rest %q, %v; Parse = %+v, %d", rh, rest, rerr, h, n)
		}
	case err == ErrIncomplete:
		want := io.ErrUnexpectedEOF
		if len(b) == 0 {
			want = io.EOF
		}
		if !errors.Is(rerr, want) {
			t.Fatalf("Read err = %v on an incomplete header, want %v", rerr, want)
		}
	default:
		if !errors.Is(rerr, ErrInvalid) {
			t.Fatalf("Read err = %v, Parse err = %v", rerr, err)
		}
	}
}

// FuzzRoundTrip builds headers from fuzzed fields and checks that every header Marshal accepts
// parses back to itself (in canonical form), in both versions, and that refusals are errors
// with the package prefix rather than bad output.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint8(1), []byte{10, 0, 0, 1}, []byte{192, 168, 1, 2}, uint16(12345), uint16(443))
	f.Add(uint8(2), uint8(1), uint8(2), netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("::ffff:1.2.3.4").AsSlice(), uint16(0), uint16(65535))
	f.Add(uint8(2), uint8(0), uint8(0), []byte{}, []byte{}, uint16(0), uint16(0))
	f.Add(uint8(1), uint8(1), uint8(0), []byte{}, []byte{}, uint16(0), uint16(0))
	f.Add(uint8(1), uint8(1), uint8(2), []byte{1, 2, 3, 4}, []byte{5, 6, 7, 8}, uint16(1), uint16(2))
	f.Add(uint8(3), uint8(2), uint8(3), []byte{1}, []byte{1, 2, 3, 4, 5}, uint16(1), uint16(2))
	f.Fuzz(func(t *testing.T, version, cmd, network uint8, src, dst []byte, sport, dport uint16) {
		networks := []string{"", "tcp", "udp", "unix"}
		h := Header{
			Version:     int(version),
			Command:     Command(cmd),
			Network:     networks[int(network)%len(networks)],
			Source:      fuzzAddrPort(src, sport),
			Destination: fuzzAddrPort(dst, dport),
		}
		b, err := h.MarshalBinary()
		if err != nil {
			if !strings.HasPrefix(err.Error(), "proxyproto: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		app, err := h.AppendBinary([]byte("x"))
		if err != nil || !bytes.Equal(app[1:], b) || app[0] != 'x' {
			t.Fatalf("AppendBinary = %q, %v; MarshalBinary = %q", app, err, b)
		}
		got, n, err := Parse(b)
		if err != nil || n != len(b) {
			t.Fatalf("%+v marshaled to %q, which gives %v (n=%d of %d)", h, b, err, n, len(b))
		}
		if want := canonical(h); got != want {
			t.Fatalf("%+v marshaled to %q, which parses as %+v", h, b, got)
		}
	})
}

// fuzzAddrPort makes an IPv4 address from 4 bytes, IPv6 from 16 (v4-mapped included), and the
// zero AddrPort (or an invalid address with a port) from anything else.
func fuzzAddrPort(b []byte, port uint16) netip.AddrPort {
	switch len(b) {
	case 4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), port)
	case 16:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b)), port)
	case 0:
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(netip.Addr{}, port)
}

// FuzzParseAddr pins the hand-written v1 address parsers to netip.ParseAddr on any text.
func FuzzParseAddr(f *testing.F) {
	for _, s := range ipCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkIP(t, s)
	})
}
