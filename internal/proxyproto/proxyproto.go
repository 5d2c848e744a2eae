// Package proxyproto reads and writes the HAProxy PROXY protocol, versions 1 (text) and 2
// (binary). A proxy that relays TCP hides the client's address from the server behind it: the
// server only sees the proxy. The PROXY protocol fixes that by sending one header, before any
// application byte, that names the real source and destination. waage both receives it (from a
// load balancer or CDN in front of a listener, to learn the true client for logs, ACLs and
// hashing) and sends it (to backends, so they learn the client waage relayed).
//
// The header is trusted input from the peer that sends it, so parsing is strict: anything the
// specification does not allow is rejected, and a connection that does not start with a header
// is rejected after its first bytes, without waiting for more. Parse does not allocate for TCP
// headers, so accepting a header costs nothing on the connection hot path.
//
// Specification: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
//
// Decisions the specification leaves open:
//   - v1 "UNKNOWN" and v2 PROXY with family AF_UNSPEC mean the sender could not tell the
//     addresses; both parse as Command Local, so callers have one rule: use the header's
//     addresses if and only if Command is Proxy.
//   - v2 AF_UNIX is accepted (the specification lets a receiver fall back to UNSPEC for valid
//     families it does not support) and parses the same way: Local, no addresses. A load
//     balancer has no use for socket paths.
//   - v2 LOCAL ignores the family byte and the whole address block, as the specification says.
//   - v2 TLVs after the addresses must be well framed and are skipped; CRC32C is not checked.
//   - v2 headers longer than MaxV2Len are rejected, well below the 64 KiB the length allows.
package proxyproto

import (
	"errors"
	"net/netip"
	"strconv"
)

// Limits a reader needs to size its buffer and to bound how much a peer can make it read.
const (
	// MaxV1Len is the longest v1 header the specification allows, CRLF included; a reader that
	// has this many bytes without a complete header is talking to a broken or hostile peer.
	MaxV1Len = 107
	// MaxV2Len is the longest v2 header accepted: the 16-byte fixed part plus 4096 bytes of
	// addresses and TLVs. The wire format allows 65535, but real senders use a few hundred
	// bytes at most, and the cap keeps a peer from making us buffer 64 KiB per connection.
	MaxV2Len = v2FixedLen + 4096
)

// Command says whether the addresses in a header mean anything. It is a type, not a bool, because
// it mirrors the v2 command nibble, which may grow.
type Command uint8

const (
	// Local marks a connection the proxy made on its own behalf (a health check) or one whose
	// addresses it cannot tell: the receiver must use the connection's real endpoints.
	Local Command = 0
	// Proxy marks a relayed connection: Source is the real client, Destination the address
	// the client connected to.
	Proxy Command = 1
)

// String names the command as the specification does, for logs.
func (c Command) String() string {
	switch c {
	case Local:
		return "LOCAL"
	case Proxy:
		return "PROXY"
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// Header is one PROXY protocol header. It is a plain comparable value so tests and callers can
// compare headers with ==. Parsed headers satisfy: Command is Proxy if and only if Network is
// "tcp" or "udp" and both addresses are valid and of the same family.
type Header struct {
	// Version is 1 (text) or 2 (binary); it is kept so a proxy can answer a backend in the
	// version it was configured for and so Marshal knows what to write.
	Version int
	// Command is Proxy for a relayed connection, Local when the addresses are not meaningful.
	Command Command
	// Network is "tcp" or "udp" (v2 only) for Proxy headers, "" otherwise; it tells a caller
	// which kind of net.Addr to build.
	Network string
	// Source and Destination are the client and the address it connected to; zero for Local.
	// IPv4 stays IPv4 and IPv4-mapped IPv6 stays IPv6 (nothing is unmapped), so a header
	// re-marshals to the same family it came in.
	Source, Destination netip.AddrPort
}

// ErrIncomplete is returned by Parse when its input is a proper prefix of a possible header: a
// caller reading from a socket reads more and tries again. Every other error means the input is
// not a valid header and the connection should be closed.
var ErrIncomplete = errors.New("proxyproto: incomplete header")

// ErrInvalid is wrapped by every error that means "this is not a valid header", so a caller of
// Read can tell a bad peer (errors.Is(err, ErrInvalid)) from an I/O error or a timeout.
var ErrInvalid = errors.New("proxyproto: invalid header")

// invalidError is a parse error. It is a string constant so rejecting garbage allocates nothing.
type invalidError string

func (e invalidError) Error() string        { return "proxyproto: invalid header: " + string(e) }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

const errNotProxy invalidError = "not a PROXY protocol header"

// Parse parses the header at the start of b and reports how many bytes it took, so a caller that
// read more than the header knows where the payload starts. It returns ErrIncomplete when b is a
// proper prefix of a valid header, and another error as soon as b cannot begin a valid header
// (for example on "GET / HTTP/1.1"), so non-PROXY clients are rejected after their first bytes.
// It does not allocate for TCP and UDP headers.
func Parse(b []byte) (h Header, n int, err error) {
	if len(b) == 0 {
		return Header{}, 0, ErrIncomplete
	}
	switch b[0] {
	case v1Prefix[0]:
		return parseV1(b)
	case v2Sig[0]:
		return parseV2(b)
	}
	return Header{}, 0, errNotProxy
}

// UnmarshalBinary parses b, which must hold exactly one whole header and nothing after it; it is
// the strict counterpart of MarshalBinary for stored or framed headers. Use Parse on a stream.
func (h *Header) UnmarshalBinary(b []byte) error {
	p, n, err := Parse(b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return invalidError("trailing data after header")
	}
	*h = p
	return nil
}

// MarshalBinary encodes the header in h.Version; see AppendBinary for what is written and
// which headers are refused.
func (h *Header) MarshalBinary() ([]byte, error) {
	size := MaxV1Len
	if h.Version == 2 {
		size = v2FixedLen + v2AddrLen6
	}
	return h.AppendBinary(make([]byte, 0, size))
}

// AppendBinary appends the encoded header to b and returns the extended slice; with enough
// capacity in b it does not allocate, so a proxy can write the header in the same buffer as the
// first payload bytes. It writes:
//   - v1: "PROXY TCP4 src dst sport dport\r\n" (TCP6 for IPv6, including IPv4-mapped IPv6), or
//     "PROXY UNKNOWN\r\n" for Local or for Proxy without addresses;
//   - v2: signature, version/command, family/protocol, length and addresses; no TLVs. Local
//     and address-less Proxy headers are written with family AF_UNSPEC and no addresses.
//
// A Proxy header without addresses parses back as Local, which means the same to a receiver.
// Inconsistent headers are refused rather than guessed at: addresses on a Local header, a
// Network without addresses or addresses without a Network, mixed families, IPv6 zones, UDP in
// v1. On error b is returned unchanged.
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	fam, err := h.family()
	if err != nil {
		return b, err
	}
	switch h.Version {
	case 1:
		return h.appendV1(b, fam)
	case 2:
		return h.appendV2(b, fam), nil
	}
	return b, errors.New("proxyproto: version must be 1 or 2")
}

// family checks that the header is consistent and returns 4 or 6 for the address family, or 0
// when the header carries no addresses.
func (h *Header) family() (int, error) {
	noAddrs := h.Source == netip.AddrPort{} && h.Destination == netip.AddrPort{}
	switch h.Command {
	case Local:
		if !noAddrs || h.Network != "" {
			return 0, errors.New("proxyproto: a LOCAL header carries no network or addresses")
		}
		return 0, nil
	case Proxy:
	default:
		return 0, errors.New("proxyproto: command must be Local or Proxy")
	}
	if h.Network == "" {
		if !noAddrs {
			return 0, errors.New("proxyproto: addresses without a network")
		}
		return 0, nil
	}
	if h.Network != "tcp" && h.Network != "udp" {
		return 0, errors.New("proxyproto: network must be tcp, udp or empty")
	}
	src, dst := h.Source.Addr(), h.Destination.Addr()
	if !src.IsValid() || !dst.IsValid() {
		return 0, errors.New("proxyproto: network " + h.Network + " needs both addresses")
	}
	if src.Zone() != "" || dst.Zone() != "" {
		return 0, errors.New("proxyproto: IPv6 zones cannot be sent")
	}
	if src.Is4() != dst.Is4() {
		return 0, errors.New("proxyproto: source and destination are of different families")
	}
	if src.Is4() {
		return 4, nil
	}
	return 6, nil
}

// For returns the header a proxy sends for a connection it relays from src (the client) to dst
// (the address the client connected to): a PROXY command with both addresses, unmapped
// (::ffff:10.0.0.1 is sent as 10.0.0.1). When the addresses are unknown or of different
// families it returns a LOCAL header, which tells the server to use the connection's own
// addresses.
func For(version int, src, dst netip.AddrPort) Header {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !src.IsValid() || !dst.IsValid() || src.Addr().Is4() != dst.Addr().Is4() {
		return Header{Version: version, Command: Local}
	}
	return Header{Version: version, Command: Proxy, Network: "tcp", Source: src, Destination: dst}
}
