package proxyproto

import "net/netip"

// The v1 header carries addresses as text. netip.ParseAddr takes a string, and converting the
// header bytes to one allocates; these parsers read the bytes directly so Parse stays
// allocation-free. They accept exactly what netip.ParseAddr accepts for the family, minus IPv6
// zones (a zone is local to a host, so it means nothing in a header); a fuzz test checks that.

// parseIPv4 parses dotted-quad IPv4: four decimal fields 0-255 without leading zeros.
func parseIPv4(s []byte) (netip.Addr, bool) {
	var ip [4]byte
	if !parseIPv4Into(s, &ip) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

func parseIPv4Into(s []byte, ip *[4]byte) bool {
	field, digits, v := 0, 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 || field > 3 {
				return false
			}
			ip[field] = byte(v)
			field, digits, v = field+1, 0, 0
			continue
		}
		c := s[i]
		if c < '0' || c > '9' || (digits == 1 && v == 0) {
			return false // not a digit, or a leading zero
		}
		v = v*10 + int(c-'0')
		digits++
		if v > 255 {
			return false
		}
	}
	return field == 4
}

// parseIPv6 parses RFC 4291 text: up to eight groups of one to four hex digits, at most one
// "::" standing for one or more zero groups, and optionally a dotted-quad IPv4 address as the
// last 32 bits.
func parseIPv6(s []byte) (netip.Addr, bool) {
	var ip [16]byte
	i := 0         // bytes of ip filled
	ellipsis := -1 // where "::" was, in bytes of ip
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis, s = 0, s[2:]
	}
	for len(s) > 0 && i < 16 {
		n, v := 0, 0
		for n < len(s) && hexVal(s[n]) >= 0 {
			v = v<<4 | hexVal(s[n])
			n++
			if n > 4 {
				return netip.Addr{}, false
			}
		}
		if n == 0 {
			return netip.Addr{}, false
		}
		if n < len(s) && s[n] == '.' {
			// An embedded IPv4 address must fill the last 32 bits, where the group starts.
			if (ellipsis < 0 && i != 12) || i+4 > 16 {
				return netip.Addr{}, false
			}
			var v4 [4]byte
			if !parseIPv4Into(s, &v4) {
				return netip.Addr{}, false
			}
			copy(ip[i:], v4[:])
			i, s = i+4, nil
			break
		}
		ip[i], ip[i+1] = byte(v>>8), byte(v)
		i, s = i+2, s[n:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis, s = i, s[1:]
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}

// hexVal returns the value of a hex digit, or -1.
func hexVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
