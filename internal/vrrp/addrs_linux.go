package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NetlinkAddresses adds and removes the virtual IPs on one interface with netlink, leaving the
// interface's other addresses alone, and announces them with gratuitous ARP on a packet socket.
// It is safe for concurrent use.
type NetlinkAddresses struct {
	iface string
}

// NewNetlinkAddresses manages the virtual IPs of the named interface.
func NewNetlinkAddresses(iface string) *NetlinkAddresses {
	return &NetlinkAddresses{iface: iface}
}

// Add adds each address with its prefix length; one already on the interface is left as it is.
func (n *NetlinkAddresses) Add(vips []netip.Prefix) error {
	link, err := netlink.LinkByName(n.iface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", n.iface, err)
	}
	have, err := n.present(link)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range vips {
		if have[p.Addr()] {
			continue
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add %s to %s: %w", p, n.iface, err))
		}
	}
	return errors.Join(errs...)
}

// Remove removes each address, whatever prefix length it was added with (a reload may have
// changed it, a crash may have left an old one); absent addresses and a missing interface are
// fine.
func (n *NetlinkAddresses) Remove(vips []netip.Prefix) error {
	link, err := netlink.LinkByName(n.iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("interface %s: %w", n.iface, err)
	}
	list, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("interface %s: addresses: %w", n.iface, err)
	}
	var errs []error
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !isVIP(ip.Unmap(), vips) {
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove %s from %s: %w", a.IPNet, n.iface, err))
		}
	}
	return errors.Join(errs...)
}

// Present reports whether every address is on the interface.
func (n *NetlinkAddresses) Present(vips []netip.Prefix) (bool, error) {
	link, err := netlink.LinkByName(n.iface)
	if err != nil {
		return false, fmt.Errorf("interface %s: %w", n.iface, err)
	}
	have, err := n.present(link)
	if err != nil {
		return false, err
	}
	for _, p := range vips {
		if !have[p.Addr()] {
			return false, nil
		}
	}
	return len(vips) > 0, nil
}

func (n *NetlinkAddresses) present(link netlink.Link) (map[netip.Addr]bool, error) {
	list, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("interface %s: addresses: %w", n.iface, err)
	}
	have := make(map[netip.Addr]bool, len(list))
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			have[ip.Unmap()] = true
		}
	}
	return have, nil
}

// Announce broadcasts one gratuitous ARP request for each IPv4 address (sender and target
// address both the virtual IP, sender hardware address the interface's), so that hosts and
// switches on the segment send to this interface from now on (RFC 5798 section 6.4.2, RFC 5227
// section 3).
func (n *NetlinkAddresses) Announce(vips []netip.Prefix) error {
	ifi, err := net.InterfaceByName(n.iface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", n.iface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil // no Ethernet, no ARP
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("packet socket for gratuitous ARP: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	var errs []error
	for _, p := range vips {
		if !p.Addr().Is4() {
			continue
		}
		if err := unix.Sendto(fd, GratuitousARP(ifi.HardwareAddr, p.Addr()), 0, to); err != nil {
			errs = append(errs, fmt.Errorf("gratuitous ARP for %s on %s: %w", p.Addr(), n.iface, err))
		}
	}
	return errors.Join(errs...)
}

// GratuitousARP builds the ARP payload announcing that ip is at mac: an ARP request whose sender
// and target protocol addresses are both ip (target hardware address zero), which every Linux,
// BSD and switch takes to update its cache.
func GratuitousARP(mac net.HardwareAddr, ip netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:2], 1)      // hardware type Ethernet
	binary.BigEndian.PutUint16(b[2:4], 0x0800) // protocol IPv4
	b[4], b[5] = 6, 4                          // address lengths
	binary.BigEndian.PutUint16(b[6:8], 1)      // request
	a := ip.As4()
	copy(b[8:14], mac)
	copy(b[14:18], a[:])
	copy(b[24:28], a[:])
	return b
}

// htons converts to network byte order, as the packet socket calls want their protocol.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// linkUp reports whether the interface exists and is up (administratively, and with a carrier
// unless the driver does not report one).
func linkUp(iface string) bool {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return false
	}
	attrs := link.Attrs()
	if attrs.Flags&net.FlagUp == 0 {
		return false
	}
	switch attrs.OperState {
	case netlink.OperDown, netlink.OperLowerLayerDown, netlink.OperNotPresent:
		return false
	}
	return true
}
