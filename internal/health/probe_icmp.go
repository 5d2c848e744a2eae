package health

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/waage/waage/internal/config"
)

// ICMP protocol numbers, for icmp.ParseMessage.
const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// icmpMode chooses the socket kind of an ICMP check; tests force one, waage uses icmpAuto.
type icmpMode int

const (
	// icmpAuto tries an unprivileged ping socket, then a raw socket.
	icmpAuto icmpMode = iota
	// icmpPing uses only the unprivileged ping socket.
	icmpPing
	// icmpRaw uses only a raw socket.
	icmpRaw
)

// icmpProber sends one echo request per check and waits for its reply, for servers that expose
// no port worth checking (or to tell a dead host from a dead service).
//
// Each check has a socket of its own, so concurrent checks need no demultiplexer: an
// unprivileged ping socket gets only its own replies, and on a raw socket, which gets a copy of
// every ICMP packet the host receives, a reply is ours only if its source, ID, sequence and
// payload all match what this check sent.
type icmpProber struct {
	id   uint16 // random, so raw sockets of other probers and other programs can tell theirs apart
	seq  atomic.Uint32
	mode icmpMode
}

func newICMPProber(*config.HealthCheck) (*icmpProber, error) {
	return &icmpProber{id: uint16(rand.N(1 << 16))}, nil
}

// Probe resolves the target's host, sends one echo request and waits for the matching reply.
func (p *icmpProber) Probe(ctx context.Context, t Target) error {
	host := hostOf(t.Address)
	if host == "" {
		return errors.New("icmp: no host in address " + t.Address)
	}
	dst, err := resolveIP(ctx, host)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return errCanceled
		}
		return errors.New(describe(err))
	}
	v6 := dst.Is6()
	c, raw, err := p.listen(v6)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	stop := bindContext(ctx, c)
	defer stop()

	seq := uint16(p.seq.Add(1))
	var data [16]byte
	copy(data[:8], "waage-hc")
	binary.BigEndian.PutUint64(data[8:], rand.Uint64())
	msg := icmp.Message{
		Type: ipv4.ICMPTypeEcho,
		Body: &icmp.Echo{ID: int(p.id), Seq: int(seq), Data: data[:]},
	}
	proto := protoICMP
	if v6 {
		msg.Type, proto = ipv6.ICMPTypeEchoRequest, protoICMPv6
	}
	b, err := msg.Marshal(nil) // the kernel computes the ICMPv6 checksum
	if err != nil {
		return fmt.Errorf("icmp: %v", err)
	}
	var to net.Addr = &net.UDPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	if raw {
		to = &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	}
	if _, err := c.WriteTo(b, to); err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return errCanceled
		}
		if isTimeout(err) {
			return errors.New("no echo reply before timeout")
		}
		return errors.New("send: " + strings.TrimPrefix(describe(err), "write: "))
	}

	want := echoMatch{dst: dst.WithZone(""), id: p.id, seq: seq, data: data[:], checkID: raw, v6: v6}
	buf := make([]byte, 1500)
	for {
		n, peer, err := c.ReadFrom(buf)
		if err != nil {
			switch {
			case errors.Is(ctx.Err(), context.Canceled):
				return errCanceled
			case isTimeout(err):
				return errors.New("no echo reply before timeout")
			default:
				return errors.New(describe(err))
			}
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		switch body := m.Body.(type) {
		case *icmp.Echo:
			if (m.Type == ipv4.ICMPTypeEchoReply || m.Type == ipv6.ICMPTypeEchoReply) &&
				want.reply(peer, body) {
				return nil
			}
		case *icmp.DstUnreach:
			if want.unreachable(body.Data) {
				return errors.New("host unreachable")
			}
		}
	}
}

// listen opens the socket for one check: an unprivileged ping socket where the system allows
// them (net.ipv4.ping_group_range, which covers ICMPv6 as well), else a raw socket, which needs
// root or CAP_NET_RAW. raw reports which it is: the two take different destination types and
// only the raw socket sees other programs' packets.
func (p *icmpProber) listen(v6 bool) (c *icmp.PacketConn, raw bool, err error) {
	pingNet, pingAddr, rawNet := "udp4", "0.0.0.0", "ip4:icmp"
	if v6 {
		pingNet, pingAddr, rawNet = "udp6", "::", "ip6:ipv6-icmp"
	}
	var pingErr error
	if p.mode != icmpRaw {
		if c, pingErr = icmp.ListenPacket(pingNet, pingAddr); pingErr == nil {
			return c, false, nil
		}
		if p.mode == icmpPing {
			return nil, false, socketError(pingErr)
		}
	}
	c, err = icmp.ListenPacket(rawNet, pingAddr)
	if err != nil {
		return nil, false, socketError(err)
	}
	// Only echo replies and unreachables matter; the kernel drops the rest (neighbour
	// discovery, other programs' echo requests) before they reach us. Best effort: the reply
	// matching below does not rely on it.
	if v6 {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		f.Accept(ipv6.ICMPTypeDestinationUnreachable)
		_ = c.IPv6PacketConn().SetICMPFilter(&f)
	} else {
		var f ipv4.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv4.ICMPTypeEchoReply)
		f.Accept(ipv4.ICMPTypeDestinationUnreachable)
		_ = c.IPv4PacketConn().SetICMPFilter(&f)
	}
	return c, true, nil
}

// socketError explains a socket that could not be opened; lacking permission is the common case
// and has a known fix.
func socketError(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return errors.New("icmp: need root or net.ipv4.ping_group_range")
	}
	return errors.New("icmp: " + describe(err))
}

// resolveIP returns the address to ping: host itself when it is an IP (a zone allowed), else
// the first address the resolver prefers.
func resolveIP(ctx context.Context, host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("lookup %s: no addresses", host)
	}
	return addrs[0].Unmap(), nil
}

// echoMatch is what identifies the reply to one echo request.
type echoMatch struct {
	dst     netip.Addr
	id, seq uint16
	data    []byte
	// checkID is false on ping sockets, where the kernel replaces the ID with its own and
	// delivers only the socket's own replies.
	checkID bool
	v6      bool
}

// reply reports whether an echo reply from peer answers our request.
func (w *echoMatch) reply(peer net.Addr, e *icmp.Echo) bool {
	var ip net.IP
	switch a := peer.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	src, ok := netip.AddrFromSlice(ip)
	if !ok || src.Unmap() != w.dst {
		return false
	}
	return (!w.checkID || uint16(e.ID) == w.id) && uint16(e.Seq) == w.seq && bytes.Equal(e.Data, w.data)
}

// unreachable reports whether a destination-unreachable message quotes our request: it carries
// the original IP header and the first 8 bytes of the echo request (type, code, checksum, ID,
// sequence).
func (w *echoMatch) unreachable(orig []byte) bool {
	var hdr int
	var dst netip.Addr
	var echoType byte
	if w.v6 {
		if len(orig) < 40 || orig[0]>>4 != 6 || orig[6] != protoICMPv6 {
			return false
		}
		hdr, dst, echoType = 40, netip.AddrFrom16([16]byte(orig[24:40])), byte(ipv6.ICMPTypeEchoRequest)
	} else {
		if len(orig) < 20 || orig[0]>>4 != 4 || orig[9] != protoICMP {
			return false
		}
		hdr, dst, echoType = max(int(orig[0]&0x0f)*4, 20), netip.AddrFrom4([4]byte(orig[16:20])), byte(ipv4.ICMPTypeEcho)
	}
	if len(orig) < hdr+8 || orig[hdr] != echoType || dst.Unmap() != w.dst {
		return false
	}
	id := binary.BigEndian.Uint16(orig[hdr+4:])
	seq := binary.BigEndian.Uint16(orig[hdr+6:])
	return (!w.checkID || id == w.id) && seq == w.seq
}
