package proxyproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// maxEmptyReads bounds how often a Reader may return nothing and no error before Read gives up,
// so a misbehaving Reader cannot spin Read forever.
const maxEmptyReads = 100

// Read reads one header from r, typically a freshly accepted connection whose read deadline the
// caller has set, because a peer that never sends its header must not hold the connection.
//
// Read reads as little as it can: a v2 header says its length, so Read stops exactly at its end.
// A v1 header has no length, so with a plain io.Reader Read cannot help reading past its CRLF;
// the bytes it read after the header are returned in rest, and the caller must consume them
// before reading r again (for example through io.MultiReader). Read never reads more than
// MaxV1Len bytes for a v1 header, and never past the end of a v2 header.
//
// buf is the storage Read reads into, so a server can reuse one buffer per connection or pool;
// rest aliases it. With cap(buf) >= 232 (a v2 header with AF_UNIX addresses) Read needs no other
// memory for headers without TLVs; it allocates a bigger buffer only when the header needs one,
// up to MaxV2Len.
//
// Errors that mean the peer sent something that is not a header wrap ErrInvalid; a peer that
// closes before sending anything gives io.EOF, one that closes mid-header io.ErrUnexpectedEOF.
func Read(r io.Reader, buf []byte) (h Header, rest []byte, err error) {
	buf = buf[:cap(buf)]
	n := 0             // bytes read into buf
	want := v2FixedLen // bytes Read may read so far without going past a header
	empty := 0
	for {
		if want > len(buf) {
			nb := make([]byte, max(want, MaxV1Len))
			copy(nb, buf[:n])
			buf = nb
		}
		m, rerr := r.Read(buf[n:want])
		n += m
		if n > 0 {
			h, hn, perr := Parse(buf[:n])
			if perr == nil {
				return h, buf[hn:n], nil
			}
			if !errors.Is(perr, ErrIncomplete) {
				return Header{}, nil, perr
			}
			switch {
			case buf[0] != v2Sig[0]:
				want = MaxV1Len
			case n >= v2FixedLen:
				want = v2FixedLen + int(binary.BigEndian.Uint16(buf[14:16]))
			}
		}
		if rerr != nil {
			if rerr == io.EOF && n > 0 {
				rerr = io.ErrUnexpectedEOF
			}
			return Header{}, nil, fmt.Errorf("proxyproto: reading header: %w", rerr)
		}
		if m > 0 {
			empty = 0
		} else if empty++; empty >= maxEmptyReads {
			return Header{}, nil, fmt.Errorf("proxyproto: reading header: %w", io.ErrNoProgress)
		}
		if n >= want {
			// Parse said more is needed, yet the header should be complete: cannot happen
			// while Parse and this function agree on the lengths.
			return Header{}, nil, errors.New("proxyproto: internal error: header longer than its length")
		}
	}
}

// ErrUntrusted is Accept's answer for a connection from a source that may not send a header.
var ErrUntrusted = errors.New("proxyproto: source not trusted to send a PROXY header")

// Accept reads the header that a connection from a trusted source must begin with, as a
// frontend that accepts the PROXY protocol does. remote and local are the connection's own
// addresses; a connection whose remote address is in none of trusted gets ErrUntrusted before
// anything is read. It returns the addresses the connection stands for (the header's for a PROXY
// command, unmapped; remote and local for LOCAL), and the bytes that came after the header,
// which the caller must use first. buf is as for Read. The caller sets the read deadline.
func Accept(r io.Reader, buf []byte, trusted []netip.Prefix, remote, local netip.AddrPort) (client, dst netip.AddrPort, rest []byte, err error) {
	a := remote.Addr().Unmap()
	ok := false
	for _, p := range trusted {
		if p.Contains(a) {
			ok = true
			break
		}
	}
	if !ok {
		return remote, local, nil, ErrUntrusted
	}
	h, rest, err := Read(r, buf)
	if err != nil {
		return remote, local, nil, err
	}
	if h.Command == Proxy {
		remote = netip.AddrPortFrom(h.Source.Addr().Unmap(), h.Source.Port())
		local = netip.AddrPortFrom(h.Destination.Addr().Unmap(), h.Destination.Port())
	}
	return remote, local, rest, nil
}
