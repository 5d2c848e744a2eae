package l4

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// ClientHello is what routing needs from a TLS ClientHello.
type ClientHello struct {
	ServerName string   // SNI host_name, lower-cased, without a trailing dot; "" when absent
	ALPN       []string // offered protocols, in order; nil when absent
}

// ErrNotTLS reports that the first bytes of a connection cannot start a TLS
// handshake record: plain HTTP, an SSH banner, garbage, or a connection that
// closed before sending a whole record header.
var ErrNotTLS = errors.New("l4: not a TLS handshake")

// errMalformedHello is wrapped by every error about input that starts like a
// TLS handshake record but does not carry a well-formed ClientHello.
var errMalformedHello = errors.New("l4: malformed ClientHello")

const (
	helloRecordHeaderLen  = 5
	helloContentHandshake = 22
	helloTypeClientHello  = 1
	// helloMaxRecordLen is the largest TLSPlaintext fragment (RFC 8446 §5.1).
	helloMaxRecordLen = 1 << 14
	// helloMaxHandshakeLen bounds the reassembled handshake message,
	// including its 4-byte header.
	helloMaxHandshakeLen = 64 << 10

	helloExtServerName = 0
	helloExtALPN       = 16
)

func helloMalformed(reason string) error {
	return fmt.Errorf("%w: %s", errMalformedHello, reason)
}

// PeekClientHello reads the TLS records that carry the ClientHello from r
// (the caller sets a read deadline on the conn) and returns the parsed hello
// and every byte it read, which the caller must send to the backend before
// anything else.
//
// It reads record by record with io.ReadFull, so it never consumes a byte
// past the last record of the ClientHello. The bytes read are returned on
// error too. Errors are ErrNotTLS, an error wrapping errMalformedHello (for
// a connection that closes inside a record it also wraps
// io.ErrUnexpectedEOF), or a wrapped read error such as a deadline.
func PeekClientHello(r io.Reader) (ClientHello, []byte, error) {
	var hdr [helloRecordHeaderLen]byte
	n, err := io.ReadFull(r, hdr[:])
	if err != nil {
		raw := append([]byte(nil), hdr[:n]...)
		if n > 0 && hdr[0] != helloContentHandshake {
			return ClientHello{}, raw, ErrNotTLS
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return ClientHello{}, raw, ErrNotTLS
		}
		return ClientHello{}, raw, fmt.Errorf("l4: reading ClientHello: %w", err)
	}
	if hdr[0] != helloContentHandshake {
		return ClientHello{}, hdr[:], ErrNotTLS
	}

	var (
		raw    []byte // everything read so far
		hs     []byte // reassembled handshake data
		msgLen = -1   // handshake message length including its header, once known
	)
	for {
		recLen := int(hdr[3])<<8 | int(hdr[4])
		if len(raw) == 0 {
			raw = make([]byte, 0, helloRecordHeaderLen+recLen)
		}
		raw = append(raw, hdr[:]...)
		if hdr[0] != helloContentHandshake {
			return ClientHello{}, raw, helloMalformed("record interleaved with the ClientHello is not a handshake record")
		}
		if hdr[1] != 3 || hdr[2] > 4 {
			return ClientHello{}, raw, helloMalformed(fmt.Sprintf("bad record version %#04x", int(hdr[1])<<8|int(hdr[2])))
		}
		if recLen == 0 {
			return ClientHello{}, raw, helloMalformed("empty handshake record")
		}
		if recLen > helloMaxRecordLen {
			return ClientHello{}, raw, helloMalformed(fmt.Sprintf("record length %d over %d", recLen, helloMaxRecordLen))
		}
		if msgLen >= 0 && len(hs)+recLen > msgLen {
			return ClientHello{}, raw, helloMalformed("record carries data after the ClientHello")
		}
		if len(hs)+recLen > helloMaxHandshakeLen {
			return ClientHello{}, raw, helloMalformed("handshake data over 64 KiB")
		}

		start := len(raw)
		raw = append(raw, make([]byte, recLen)...)
		got, err := io.ReadFull(r, raw[start:])
		if err != nil {
			raw = raw[:start+got]
			return ClientHello{}, raw, helloReadErr(err)
		}
		frag := raw[start:]
		if hs == nil {
			// The common single-record case needs no copy; a later append
			// reallocates because the capacity is capped.
			hs = frag[:len(frag):len(frag)]
		} else {
			hs = append(hs, frag...)
		}

		if msgLen < 0 && len(hs) >= 4 {
			if hs[0] != helloTypeClientHello {
				return ClientHello{}, raw, helloMalformed(fmt.Sprintf("handshake type %d, want client_hello", hs[0]))
			}
			msgLen = 4 + (int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]))
			if msgLen > helloMaxHandshakeLen {
				return ClientHello{}, raw, helloMalformed(fmt.Sprintf("handshake message length %d over 64 KiB", msgLen))
			}
			if len(hs) > msgLen {
				return ClientHello{}, raw, helloMalformed("record carries data after the ClientHello")
			}
			if rest := msgLen - len(hs); rest > 0 {
				// Room for the rest in full-size records.
				raw = slices.Grow(raw, rest+helloRecordHeaderLen*((rest+helloMaxRecordLen-1)/helloMaxRecordLen))
			}
		}
		if msgLen >= 0 && len(hs) == msgLen {
			hello, err := helloParse(hs[4:])
			if err != nil {
				return ClientHello{}, raw, err
			}
			return hello, raw, nil
		}

		if got, err := io.ReadFull(r, hdr[:]); err != nil {
			raw = append(raw, hdr[:got]...)
			return ClientHello{}, raw, helloReadErr(err)
		}
	}
}

// helloReadErr classifies a read error after the first record header: a
// connection that ends inside the ClientHello is malformed input; anything
// else (a deadline, a reset) is passed on.
func helloReadErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: truncated: %w", errMalformedHello, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("l4: reading ClientHello: %w", err)
}

// helloParse parses a ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).
func helloParse(body []byte) (ClientHello, error) {
	var hello ClientHello
	s := helloReader(body)
	if !s.skip(2) { // legacy_version
		return hello, helloMalformed("truncated legacy_version")
	}
	if !s.skip(32) {
		return hello, helloMalformed("truncated random")
	}
	sid, ok := s.vec8()
	if !ok {
		return hello, helloMalformed("truncated session_id")
	}
	if len(sid) > 32 {
		return hello, helloMalformed("session_id longer than 32 bytes")
	}
	suites, ok := s.vec16()
	if !ok {
		return hello, helloMalformed("truncated cipher_suites")
	}
	if len(suites) < 2 || len(suites)%2 != 0 {
		return hello, helloMalformed("bad cipher_suites length")
	}
	comp, ok := s.vec8()
	if !ok {
		return hello, helloMalformed("truncated compression_methods")
	}
	if len(comp) < 1 {
		return hello, helloMalformed("no compression_methods")
	}
	if len(s) == 0 {
		return hello, nil // no extensions (RFC 5246 §7.4.1.2)
	}
	exts, ok := s.vec16()
	if !ok || len(s) != 0 {
		return hello, helloMalformed("extensions length does not match the message")
	}

	var seen [1 << 16 / 64]uint64
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec16()
		if !ok1 || !ok2 {
			return hello, helloMalformed("truncated extension")
		}
		if seen[typ/64]&(1<<(typ%64)) != 0 {
			return hello, helloMalformed(fmt.Sprintf("duplicate extension %d", typ))
		}
		seen[typ/64] |= 1 << (typ % 64)
		var err error
		switch typ {
		case helloExtServerName:
			hello.ServerName, err = helloParseSNI(data)
		case helloExtALPN:
			hello.ALPN, err = helloParseALPN(data)
		}
		if err != nil {
			return hello, err
		}
	}
	return hello, nil
}

// helloParseSNI parses a server_name extension (RFC 6066 §3).
func helloParseSNI(data helloReader) (string, error) {
	list, ok := data.vec16()
	if !ok || len(data) != 0 {
		return "", helloMalformed("server_name list length does not match the extension")
	}
	if len(list) == 0 {
		return "", helloMalformed("empty server_name list")
	}
	var host []byte
	for len(list) > 0 {
		typ, ok1 := list.u8()
		name, ok2 := list.vec16()
		if !ok1 || !ok2 {
			return "", helloMalformed("truncated server_name")
		}
		if len(name) == 0 {
			return "", helloMalformed("empty server_name")
		}
		if typ != 0 { // not host_name: not ours to judge
			continue
		}
		if host != nil {
			return "", helloMalformed("more than one host_name")
		}
		host = name
	}
	if host == nil {
		return "", nil
	}
	out := make([]byte, len(host))
	for i, c := range host {
		if c <= ' ' || c >= 0x7f {
			return "", helloMalformed(fmt.Sprintf("host_name byte %#02x", c))
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	if out[len(out)-1] == '.' {
		out = out[:len(out)-1]
	}
	if len(out) == 0 {
		return "", helloMalformed("host_name is only a dot")
	}
	return string(out), nil
}

// helloParseALPN parses an application_layer_protocol_negotiation extension
// (RFC 7301 §3.1).
func helloParseALPN(data helloReader) ([]string, error) {
	list, ok := data.vec16()
	if !ok || len(data) != 0 {
		return nil, helloMalformed("ALPN list length does not match the extension")
	}
	if len(list) == 0 {
		return nil, helloMalformed("empty ALPN list")
	}
	var protos []string
	for len(list) > 0 {
		p, ok := list.vec8()
		if !ok {
			return nil, helloMalformed("truncated ALPN protocol")
		}
		if len(p) == 0 {
			return nil, helloMalformed("empty ALPN protocol")
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}

// helloReader is a bounds-checked cursor over TLS presentation-language
// data; every method consumes nothing and returns false when the data is
// too short.
type helloReader []byte

func (s *helloReader) skip(n int) bool {
	if len(*s) < n {
		return false
	}
	*s = (*s)[n:]
	return true
}

func (s *helloReader) u8() (uint8, bool) {
	if len(*s) < 1 {
		return 0, false
	}
	v := (*s)[0]
	*s = (*s)[1:]
	return v, true
}

func (s *helloReader) u16() (uint16, bool) {
	if len(*s) < 2 {
		return 0, false
	}
	v := uint16((*s)[0])<<8 | uint16((*s)[1])
	*s = (*s)[2:]
	return v, true
}

func (s *helloReader) take(n int) (helloReader, bool) {
	if len(*s) < n {
		return nil, false
	}
	v := (*s)[:n:n]
	*s = (*s)[n:]
	return v, true
}

// vec8 reads a vector with a 1-byte length prefix.
func (s *helloReader) vec8() (helloReader, bool) {
	if len(*s) < 1 {
		return nil, false
	}
	t := (*s)[1:]
	v, ok := t.take(int((*s)[0]))
	if ok {
		*s = t
	}
	return v, ok
}

// vec16 reads a vector with a 2-byte length prefix.
func (s *helloReader) vec16() (helloReader, bool) {
	if len(*s) < 2 {
		return nil, false
	}
	t := (*s)[2:]
	v, ok := t.take(int((*s)[0])<<8 | int((*s)[1]))
	if ok {
		*s = t
	}
	return v, ok
}
