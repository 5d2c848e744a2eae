package proxyproto

import (
	"encoding/binary"
	"net/netip"
)

// v2Sig starts every v2 header. It was chosen by the specification to be invalid in any text
// protocol, so a v2 header cannot be mistaken for application data and vice versa.
var v2Sig = [12]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}

const (
	v2FixedLen   = 16  // signature, version/command, family/protocol, length
	v2AddrLen4   = 12  // two IPv4 addresses and two ports
	v2AddrLen6   = 36  // two IPv6 addresses and two ports
	v2AddrLenUx  = 216 // two 108-byte socket paths
	v2VerCmdBase = 0x20

	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3
	protoTCP  = 0x1
	protoUDP  = 0x2
)

const (
	errV2Sig     invalidError = "v2: bad signature"
	errV2Version invalidError = "v2: version must be 2"
	errV2Command invalidError = "v2: command must be LOCAL or PROXY"
	errV2Family  invalidError = "v2: unknown address family or protocol"
	errV2TooLong invalidError = "v2: header longer than 4112 bytes"
	errV2Short   invalidError = "v2: length does not cover the addresses"
	errV2TLV     invalidError = "v2: TLVs do not fit the length"
)

// parseV2 parses a binary header, checking each field as soon as its bytes arrive so that a bad
// header is rejected without waiting for the rest. b[0] is '\r'.
func parseV2(b []byte) (Header, int, error) {
	for i := range v2Sig {
		if i >= len(b) {
			return Header{}, 0, ErrIncomplete
		}
		if b[i] != v2Sig[i] {
			return Header{}, 0, errV2Sig
		}
	}
	if len(b) < 13 {
		return Header{}, 0, ErrIncomplete
	}
	if b[12]>>4 != 2 {
		return Header{}, 0, errV2Version
	}
	cmd := Command(b[12] & 0xf)
	if cmd != Local && cmd != Proxy {
		return Header{}, 0, errV2Command
	}
	if len(b) < 14 {
		return Header{}, 0, ErrIncomplete
	}
	// LOCAL ignores the family byte entirely, as the specification requires; PROXY accepts
	// only the seven combinations it lists.
	fam, proto := b[13]>>4, b[13]&0xf
	addrLen := 0
	if cmd == Proxy {
		switch {
		case b[13] == 0x00:
		case fam == famUnspec || fam > famUnix || proto == 0 || proto > protoUDP:
			return Header{}, 0, errV2Family
		case fam == famInet:
			addrLen = v2AddrLen4
		case fam == famInet6:
			addrLen = v2AddrLen6
		case fam == famUnix:
			addrLen = v2AddrLenUx
		}
	}
	if len(b) < v2FixedLen {
		return Header{}, 0, ErrIncomplete
	}
	total := v2FixedLen + int(binary.BigEndian.Uint16(b[14:16]))
	if total > MaxV2Len {
		return Header{}, 0, errV2TooLong
	}
	if total < v2FixedLen+addrLen {
		return Header{}, 0, errV2Short
	}
	if len(b) < total {
		return Header{}, 0, ErrIncomplete
	}
	if cmd == Local || b[13] == 0x00 {
		// No meaningful addresses: whatever the block holds is skipped unread.
		return Header{Version: 2, Command: Local}, total, nil
	}
	if !tlvsFit(b[v2FixedLen+addrLen : total]) {
		return Header{}, 0, errV2TLV
	}
	if fam == famUnix {
		return Header{Version: 2, Command: Local}, total, nil
	}
	h := Header{Version: 2, Command: Proxy, Network: "tcp"}
	if proto == protoUDP {
		h.Network = "udp"
	}
	a := b[v2FixedLen:]
	if fam == famInet {
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	} else {
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	return h, total, nil
}

// tlvsFit reports whether b is a sequence of whole TLVs (type, 16-bit length, value). The
// values are not interpreted, but their framing is checked: a sender whose lengths do not add
// up is broken, and its addresses are not to be trusted either.
func tlvsFit(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 3 {
			return false
		}
		n := 3 + int(binary.BigEndian.Uint16(b[1:3]))
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return true
}

// appendV2 writes the binary form; fam is what Header.family returned.
func (h *Header) appendV2(b []byte, fam int) []byte {
	b = append(b, v2Sig[:]...)
	b = append(b, v2VerCmdBase|byte(h.Command))
	if fam == 0 {
		return append(b, famUnspec, 0, 0)
	}
	proto := byte(protoTCP)
	if h.Network == "udp" {
		proto = protoUDP
	}
	src, dst := h.Source.Addr(), h.Destination.Addr()
	if fam == 4 {
		b = append(b, famInet<<4|proto, 0, v2AddrLen4)
		s, d := src.As4(), dst.As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	} else {
		b = append(b, famInet6<<4|proto, 0, v2AddrLen6)
		s, d := src.As16(), dst.As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, h.Source.Port())
	return binary.BigEndian.AppendUint16(b, h.Destination.Port())
}
