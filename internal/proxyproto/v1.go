package proxyproto

import (
	"errors"
	"net/netip"
	"strconv"
)

// v1Prefix starts every v1 header; its first byte tells Parse which version to expect.
const v1Prefix = "PROXY "

const (
	errV1TooLong invalidError = "v1: no CRLF within 107 bytes"
	errV1Proto   invalidError = "v1: protocol must be TCP4, TCP6 or UNKNOWN"
	errV1Space   invalidError = "v1: fields must be separated by single spaces"
	errV1CRLF    invalidError = "v1: line must end in CRLF"
	errV1Addr4   invalidError = "v1: bad IPv4 address"
	errV1Addr6   invalidError = "v1: bad IPv6 address"
	errV1Port    invalidError = "v1: bad port"
)

// parseV1 parses a text header. It walks the line field by field so that it can tell, when the
// input ends early, whether what it has seen so far can still become a valid header
// (ErrIncomplete) or not (an error right away). b[0] is 'P'.
func parseV1(b []byte) (Header, int, error) {
	line := b
	// Once MaxV1Len bytes are in hand, running out of line means the header is too long.
	var short error = ErrIncomplete
	if len(line) >= MaxV1Len {
		line, short = line[:MaxV1Len], errV1TooLong
	}
	for i := 0; i < len(v1Prefix); i++ {
		if i >= len(line) {
			return Header{}, 0, short
		}
		if line[i] != v1Prefix[i] {
			return Header{}, 0, errNotProxy
		}
	}
	p := len(v1Prefix)
	end := fieldEnd(line, p)
	proto := line[p:end]
	if end == len(line) {
		if hasPrefix("TCP4", proto) || hasPrefix("TCP6", proto) || hasPrefix("UNKNOWN", proto) {
			return Header{}, 0, short
		}
		return Header{}, 0, errV1Proto
	}
	var v6 bool
	switch string(proto) {
	case "TCP4":
	case "TCP6":
		v6 = true
	case "UNKNOWN":
		return parseV1Unknown(line, end, short)
	default:
		return Header{}, 0, errV1Proto
	}
	if line[end] != ' ' {
		return Header{}, 0, errV1Space
	}
	src, p, err := v1Addr(line, end+1, v6, short)
	if err != nil {
		return Header{}, 0, err
	}
	dst, p, err := v1Addr(line, p, v6, short)
	if err != nil {
		return Header{}, 0, err
	}
	sport, p, err := v1Port(line, p, ' ', short)
	if err != nil {
		return Header{}, 0, err
	}
	dport, p, err := v1Port(line, p, '\r', short)
	if err != nil {
		return Header{}, 0, err
	}
	if p >= len(line) {
		return Header{}, 0, short
	}
	if line[p] != '\n' {
		return Header{}, 0, errV1CRLF
	}
	return Header{
		Version:     1,
		Command:     Proxy,
		Network:     "tcp",
		Source:      netip.AddrPortFrom(src, sport),
		Destination: netip.AddrPortFrom(dst, dport),
	}, p + 1, nil
}

// parseV1Unknown finishes an UNKNOWN header, whose end is at line[end] (a space or CR). The
// specification tells receivers to ignore whatever follows UNKNOWN up to the CRLF, so any bytes
// but CR and LF are allowed there.
func parseV1Unknown(line []byte, end int, short error) (Header, int, error) {
	p := end
	if line[p] == ' ' {
		for p++; p < len(line) && line[p] != '\r'; p++ {
			if line[p] == '\n' {
				return Header{}, 0, errV1CRLF
			}
		}
		if p == len(line) {
			return Header{}, 0, short
		}
	}
	// line[p] is the CR.
	p++
	if p >= len(line) {
		return Header{}, 0, short
	}
	if line[p] != '\n' {
		return Header{}, 0, errV1CRLF
	}
	return Header{Version: 1, Command: Local}, p + 1, nil
}

// v1Addr parses the address field starting at line[p], which must end in a space, and returns
// the position after that space.
func v1Addr(line []byte, p int, v6 bool, short error) (netip.Addr, int, error) {
	bad := errV1Addr4
	if v6 {
		bad = errV1Addr6
	}
	end := fieldEnd(line, p)
	field := line[p:end]
	if end == len(line) {
		if addrPrefixOK(field, v6) {
			return netip.Addr{}, 0, short
		}
		return netip.Addr{}, 0, bad
	}
	if line[end] != ' ' {
		return netip.Addr{}, 0, errV1Space
	}
	var a netip.Addr
	var ok bool
	if v6 {
		a, ok = parseIPv6(field)
	} else {
		a, ok = parseIPv4(field)
	}
	if !ok {
		return netip.Addr{}, 0, bad
	}
	return a, end + 1, nil
}

// addrPrefixOK reports whether field could begin an address of the family; it only looks at
// the characters and the length, which is enough to reject non-PROXY garbage early.
func addrPrefixOK(field []byte, v6 bool) bool {
	if !v6 {
		if len(field) > len("255.255.255.255") {
			return false
		}
		for _, c := range field {
			if c != '.' && (c < '0' || c > '9') {
				return false
			}
		}
		return true
	}
	if len(field) > len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255") {
		return false
	}
	for _, c := range field {
		if c != ':' && c != '.' && hexVal(c) < 0 {
			return false
		}
	}
	return true
}

// v1Port parses the port field starting at line[p], which must end in delim, and returns the
// position after delim. Ports are decimal without leading zeros, so each port has exactly one
// spelling and headers compare byte for byte.
func v1Port(line []byte, p int, delim byte, short error) (uint16, int, error) {
	end := fieldEnd(line, p)
	field := line[p:end]
	if len(field) > 5 || (len(field) > 1 && field[0] == '0') {
		return 0, 0, errV1Port
	}
	v := 0
	for _, c := range field {
		if c < '0' || c > '9' {
			return 0, 0, errV1Port
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, 0, errV1Port
	}
	if end == len(line) {
		return 0, 0, short
	}
	if len(field) == 0 || line[end] != delim {
		if delim == '\r' {
			return 0, 0, errV1CRLF
		}
		return 0, 0, errV1Space
	}
	return uint16(v), end + 1, nil
}

// fieldEnd returns the index of the first space or CR at or after p, or len(line).
func fieldEnd(line []byte, p int) int {
	for ; p < len(line); p++ {
		if line[p] == ' ' || line[p] == '\r' {
			return p
		}
	}
	return p
}

// hasPrefix reports whether b is a prefix of s, without converting b to a string.
func hasPrefix(s string, b []byte) bool {
	if len(b) > len(s) {
		return false
	}
	for i, c := range b {
		if s[i] != c {
			return false
		}
	}
	return true
}

// appendV1 writes the text form; fam is what Header.family returned.
func (h *Header) appendV1(b []byte, fam int) ([]byte, error) {
	if fam == 0 {
		return append(b, "PROXY UNKNOWN\r\n"...), nil
	}
	if h.Network != "tcp" {
		return b, errors.New("proxyproto: v1 can only carry tcp")
	}
	start := len(b)
	if fam == 4 {
		b = append(b, "PROXY TCP4 "...)
	} else {
		b = append(b, "PROXY TCP6 "...)
	}
	b = h.Source.Addr().AppendTo(b)
	b = append(b, ' ')
	b = h.Destination.Addr().AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(h.Source.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(h.Destination.Port()), 10)
	b = append(b, '\r', '\n')
	if len(b)-start > MaxV1Len {
		// Cannot happen with netip's formatting (at most 104 bytes), but a receiver would
		// reject it, so never send it.
		return b[:start], errors.New("proxyproto: v1 header would exceed 107 bytes")
	}
	return b, nil
}
