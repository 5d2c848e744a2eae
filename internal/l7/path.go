package l7

// normalizePath appends the normalised form of the raw origin-form path p to dst and returns it.
//
// Routing matches on this form, and it is what waage forwards, so a backend serves exactly what was
// routed: percent-encoded unreserved characters are decoded (/%61dmin is /admin), other escapes get
// upper-case hex, runs of slashes collapse (//admin is /admin), and "." and ".." segments are
// resolved (/api/../admin is /admin; ".." never climbs above the root). Escapes that decode to NUL,
// malformed escapes, and encoded slashes or backslashes that would form a dot segment once a server
// decodes them (/api%2F..%2Fadmin) are rejected with ok == false.
func normalizePath(dst, p []byte) (out []byte, ok bool) {
	base := len(dst)
	dst = append(dst, '/')
	i := 0
	encSep := false
	for i < len(p) {
		// Skip slashes between segments.
		for i < len(p) && p[i] == '/' {
			i++
		}
		if i >= len(p) {
			break
		}
		segStart := len(dst)
		for i < len(p) && p[i] != '/' {
			c := p[i]
			if c == '%' {
				if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
					return dst, false
				}
				v := unhex(p[i+1])<<4 | unhex(p[i+2])
				switch {
				case v == 0:
					return dst, false
				case isUnreserved(v):
					dst = append(dst, v)
				default:
					if v == '/' || v == '\\' {
						encSep = true
					}
					dst = append(dst, '%', upperHex[v>>4], upperHex[v&15])
				}
				i += 3
				continue
			}
			dst = append(dst, c)
			i++
		}
		seg := dst[segStart:]
		switch {
		case len(seg) == 1 && seg[0] == '.':
			dst = dst[:segStart]
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			dst = dst[:segStart]
			// Remove the previous segment and its slash, keeping the root.
			j := segStart - 1
			for j > base && dst[j-1] != '/' {
				j--
			}
			if j > base {
				dst = dst[:j]
			} else {
				dst = dst[:base+1]
			}
		default:
			if encSep && hasEncodedDotSegment(seg) {
				return dst, false
			}
			dst = append(dst, '/')
		}
	}
	// A trailing slash in the input is kept; otherwise drop the one appended after the last segment.
	if n := len(dst); n > base+1 && dst[n-1] == '/' && !(len(p) > 0 && p[len(p)-1] == '/') {
		lastIsDot := endsWithDotSegment(p)
		if !lastIsDot {
			dst = dst[:n-1]
		}
	}
	return dst, true
}

// endsWithDotSegment reports whether the raw path's last segment is "." or ".." (possibly
// encoded), in which case the normalised path keeps its trailing slash, as RFC 3986 5.2.4 does.
func endsWithDotSegment(p []byte) bool {
	i := len(p)
	for i > 0 && p[i-1] != '/' {
		i--
	}
	seg := p[i:]
	n := 0
	for j := 0; j < len(seg); j++ {
		if seg[j] == '.' {
			n++
		} else if seg[j] == '%' && j+2 < len(seg) && seg[j+1] == '2' && (seg[j+2] == 'e' || seg[j+2] == 'E') {
			n++
			j += 2
		} else {
			return false
		}
	}
	return n == 1 || n == 2
}

// hasEncodedDotSegment reports whether a segment, split at %2F or %5C as a server that decodes
// them would, contains a "." or ".." piece.
func hasEncodedDotSegment(seg []byte) bool {
	start := 0
	for i := 0; i <= len(seg); i++ {
		end := i == len(seg)
		if !end && seg[i] == '%' && i+2 < len(seg) &&
			(seg[i+1] == '2' && seg[i+2] == 'F' || seg[i+1] == '5' && seg[i+2] == 'C') {
			end = true
		}
		if end {
			piece := seg[start:i]
			if len(piece) == 1 && piece[0] == '.' || len(piece) == 2 && piece[0] == '.' && piece[1] == '.' {
				return true
			}
			start = i + 3
			i += 2
		}
	}
	return false
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isUnreserved is RFC 3986's unreserved set: ALPHA / DIGIT / "-" / "." / "_" / "~".
func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// pathIsNormal reports whether p is already in normal form, so the common case needs no copy:
// no escapes, no empty, "." or ".." segments.
func pathIsNormal(p []byte) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			seg := p[segStart:i]
			if i < len(p) && len(seg) == 0 {
				return false
			}
			if len(seg) == 1 && seg[0] == '.' || len(seg) == 2 && seg[0] == '.' && seg[1] == '.' {
				return false
			}
			segStart = i + 1
			continue
		}
		if p[i] == '%' {
			return false
		}
	}
	return true
}
