package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// socketTransport sends and receives adverts on a raw IPv4 socket for protocol 112, bound to
// one interface: multicast to 224.0.0.18, or unicast to the configured peers.
type socketTransport struct {
	conn  net.PacketConn
	pc    *ipv4.PacketConn
	ifi   *net.Interface
	local netip.Addr
	peers []netip.Addr // nil: multicast
	buf   []byte
}

// openSocket opens the raw socket for cfg: bound to the interface (SO_BINDTODEVICE) so that
// instances on different interfaces see only their own network, TTL 255 on every advert,
// multicast loopback off (a router must not hear itself), and the arrival TTL and destination
// reported with each packet for the checks of RFC 5798 section 7.1.
func openSocket(cfg Config) (Transport, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", cfg.Interface, err)
	}
	local := cfg.UnicastSrc
	if !local.IsValid() {
		if local, err = primaryIPv4(cfg.Interface, cfg.VIPs); err != nil {
			return nil, err
		}
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, cfg.Interface)
		})
		return errors.Join(err, serr)
	}}
	conn, err := lc.ListenPacket(context.Background(), "ip4:112", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("raw socket for protocol 112 (needs CAP_NET_RAW): %w", err)
	}
	t := &socketTransport{conn: conn, pc: ipv4.NewPacketConn(conn), ifi: ifi, local: local, buf: make([]byte, 2048)}
	if len(cfg.UnicastPeers) > 0 {
		for _, p := range cfg.UnicastPeers {
			if p != local {
				t.peers = append(t.peers, p)
			}
		}
	}
	if err := t.setup(); err != nil {
		conn.Close()
		return nil, err
	}
	return t, nil
}

func (t *socketTransport) setup() error {
	pc := t.pc
	if err := pc.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		return fmt.Errorf("socket options: %w", err)
	}
	if err := pc.SetTTL(TTL); err != nil {
		return fmt.Errorf("socket options: %w", err)
	}
	// Internetwork control precedence, as routers mark their protocol traffic.
	if err := pc.SetTOS(0xc0); err != nil {
		return fmt.Errorf("socket options: %w", err)
	}
	if t.peers != nil {
		return nil
	}
	group := &net.IPAddr{IP: MulticastGroup.AsSlice()}
	if err := pc.JoinGroup(t.ifi, group); err != nil {
		return fmt.Errorf("join %s on %s: %w", MulticastGroup, t.ifi.Name, err)
	}
	if err := pc.SetMulticastInterface(t.ifi); err != nil {
		return fmt.Errorf("socket options: %w", err)
	}
	if err := pc.SetMulticastTTL(TTL); err != nil {
		return fmt.Errorf("socket options: %w", err)
	}
	if err := pc.SetMulticastLoopback(false); err != nil {
		return fmt.Errorf("socket options: %w", err)
	}
	return nil
}

// primaryIPv4 returns the interface's first primary IPv4 address that is not a virtual IP: the
// source of the adverts and this router's identity in the tie-break.
func primaryIPv4(iface string, vips []netip.Prefix) (netip.Addr, error) {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: %w", iface, err)
	}
	list, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: addresses: %w", iface, err)
	}
	var secondary netip.Addr
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if isVIP(ip, vips) || ip.IsLinkLocalUnicast() {
			continue
		}
		if a.Flags&unix.IFA_F_SECONDARY == 0 {
			return ip, nil
		}
		if !secondary.IsValid() {
			secondary = ip
		}
	}
	if secondary.IsValid() {
		return secondary, nil
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address of its own to send adverts from", iface)
}

func isVIP(ip netip.Addr, vips []netip.Prefix) bool {
	for _, v := range vips {
		if v.Addr() == ip {
			return true
		}
	}
	return false
}

// Send sends the advert to the multicast group, or to each unicast peer, from the local
// address, with the checksum for each destination.
func (t *socketTransport) Send(a *Advert) error {
	dsts := t.peers
	if dsts == nil {
		dsts = []netip.Addr{MulticastGroup}
	}
	var errs []error
	for _, dst := range dsts {
		b, err := a.Marshal(t.local, dst)
		if err != nil {
			return err
		}
		cm := &ipv4.ControlMessage{Src: t.local.AsSlice()}
		if t.peers == nil {
			cm.IfIndex = t.ifi.Index
		}
		if _, err := t.pc.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Receive reads the next packet and checks it (TTL, version, type, length, checksum).
func (t *socketTransport) Receive() (*Advert, netip.Addr, error) {
	for {
		n, cm, from, err := t.pc.ReadFrom(t.buf)
		if err != nil {
			return nil, netip.Addr{}, err
		}
		if cm == nil || cm.Dst == nil {
			continue
		}
		if cm.IfIndex != 0 && cm.IfIndex != t.ifi.Index {
			continue
		}
		ipa, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, ok1 := netip.AddrFromSlice(ipa.IP)
		dst, ok2 := netip.AddrFromSlice(cm.Dst)
		if !ok1 || !ok2 {
			continue
		}
		src, dst = src.Unmap(), dst.Unmap()
		a, err := Parse(t.buf[:n], src, dst, cm.TTL)
		if err != nil {
			return nil, src, fmt.Errorf("from %s: %w", src, err)
		}
		return a, src, nil
	}
}

// LocalAddr is the advert source address.
func (t *socketTransport) LocalAddr() netip.Addr { return t.local }

// Close closes the socket; a blocked Receive returns net.ErrClosed.
func (t *socketTransport) Close() error {
	if t.peers == nil {
		t.pc.LeaveGroup(t.ifi, &net.IPAddr{IP: MulticastGroup.AsSlice()})
	}
	return t.conn.Close()
}
