package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Protocol constants of RFC 5798.
const (
	// IPProtocol is VRRP's IP protocol number.
	IPProtocol = 112
	// Version is the protocol version this package speaks.
	Version = 3
	// TypeAdvertisement is the only VRRP message type.
	TypeAdvertisement = 1
	// TTL is the IP TTL (IPv6 hop limit) of every advert; a received advert with another TTL
	// crossed a router and is dropped (RFC 5798 section 5.1.1.3).
	TTL = 255
	// HeaderLen is the length of an advert without its addresses.
	HeaderLen = 8
	// MaxAdvertInterval is the largest interval the 12-bit centisecond field can carry.
	MaxAdvertInterval = 4095 * Centisecond
	// Centisecond is the unit of the advert's interval field.
	Centisecond = 10 * time.Millisecond
)

// MulticastGroup is the IPv4 multicast address adverts go to (RFC 5798 section 5.1.1.2).
var MulticastGroup = netip.AddrFrom4([4]byte{224, 0, 0, 18})

// Errors that UnmarshalBinary and Parse return for packets that must be discarded.
var (
	ErrShort    = errors.New("vrrp: packet too short")
	ErrVersion  = errors.New("vrrp: not version 3")
	ErrType     = errors.New("vrrp: not an advertisement")
	ErrLength   = errors.New("vrrp: length does not match the address count")
	ErrChecksum = errors.New("vrrp: bad checksum")
	ErrTTL      = errors.New("vrrp: TTL is not 255")
	ErrFamily   = errors.New("vrrp: addresses of mixed or unknown family")
)

// Advert is one VRRPv3 advertisement (RFC 5798 section 5.2):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|(rsvd) |     Max Adver Int     |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       IPvX Address(es)                        |
//
// The checksum covers a pseudo-header of the enclosing IP packet (source, destination, protocol
// and length), so it can only be computed or verified with those addresses: see Checksum and
// Parse. MarshalBinary writes the Checksum field as it is.
type Advert struct {
	VRID     uint8
	Priority uint8
	// MaxAdvertInterval is in centiseconds (12 bits).
	MaxAdvertInterval uint16
	Checksum          uint16
	// Addrs are the virtual router's addresses, all IPv4 or all IPv6.
	Addrs []netip.Addr
}

// Interval returns MaxAdvertInterval as a duration.
func (a *Advert) Interval() time.Duration {
	return time.Duration(a.MaxAdvertInterval) * Centisecond
}

// Centiseconds converts an interval to the advert's field, rounded down and clamped to
// 1..4095 (zero would make a backup's master-down timer fire at once).
func Centiseconds(d time.Duration) uint16 {
	cs := d / Centisecond
	switch {
	case cs < 1:
		return 1
	case cs > 4095:
		return 4095
	}
	return uint16(cs)
}

// family reports whether the addresses are IPv6 (IPv4-mapped ones included), and fails when
// the family is mixed or an address is missing.
func (a *Advert) family() (v6 bool, err error) {
	for i, ad := range a.Addrs {
		is6 := ad.Is6()
		if !ad.IsValid() || (i > 0 && is6 != v6) {
			return false, ErrFamily
		}
		v6 = is6
	}
	return v6, nil
}

// MarshalBinary encodes the advert with its Checksum field as it is.
func (a *Advert) MarshalBinary() ([]byte, error) {
	return a.AppendBinary(nil)
}

// AppendBinary appends the encoded advert to b.
func (a *Advert) AppendBinary(b []byte) ([]byte, error) {
	v6, err := a.family()
	if err != nil {
		return b, err
	}
	if len(a.Addrs) > 255 {
		return b, fmt.Errorf("vrrp: %d addresses, at most 255 fit", len(a.Addrs))
	}
	if a.MaxAdvertInterval > 0x0fff {
		return b, fmt.Errorf("vrrp: advert interval %d cs does not fit 12 bits", a.MaxAdvertInterval)
	}
	b = append(b, Version<<4|TypeAdvertisement, a.VRID, a.Priority, byte(len(a.Addrs)))
	b = binary.BigEndian.AppendUint16(b, a.MaxAdvertInterval)
	b = binary.BigEndian.AppendUint16(b, a.Checksum)
	for _, ad := range a.Addrs {
		if v6 {
			s := ad.As16()
			b = append(b, s[:]...)
		} else {
			s := ad.As4()
			b = append(b, s[:]...)
		}
	}
	return b, nil
}

// UnmarshalBinary decodes an IPv4 advert without checking its checksum (Parse does, given the IP
// addresses). Bytes after the addresses are ignored; the reserved bits are ignored as the RFC
// says.
func (a *Advert) UnmarshalBinary(b []byte) error {
	return a.unmarshal(b, false)
}

// UnmarshalIPv6 is UnmarshalBinary for an advert that came over IPv6.
func (a *Advert) UnmarshalIPv6(b []byte) error {
	return a.unmarshal(b, true)
}

func (a *Advert) unmarshal(b []byte, v6 bool) error {
	if len(b) < HeaderLen {
		return ErrShort
	}
	if b[0]>>4 != Version {
		return ErrVersion
	}
	if b[0]&0x0f != TypeAdvertisement {
		return ErrType
	}
	size := 4
	if v6 {
		size = 16
	}
	n := int(b[3])
	if len(b) < HeaderLen+n*size {
		return ErrLength
	}
	*a = Advert{
		VRID:              b[1],
		Priority:          b[2],
		MaxAdvertInterval: binary.BigEndian.Uint16(b[4:6]) & 0x0fff,
		Checksum:          binary.BigEndian.Uint16(b[6:8]),
		Addrs:             make([]netip.Addr, n),
	}
	for i := range n {
		off := HeaderLen + i*size
		if v6 {
			a.Addrs[i] = netip.AddrFrom16([16]byte(b[off : off+16]))
		} else {
			a.Addrs[i] = netip.AddrFrom4([4]byte(b[off : off+4]))
		}
	}
	return nil
}

// Len is the advert's encoded length.
func (a *Advert) Len() int {
	size := 4
	if v6, _ := a.family(); v6 {
		size = 16
	}
	return HeaderLen + len(a.Addrs)*size
}

// Marshal encodes the advert with the checksum computed for an IP packet from src to dst, as
// RFC 5798 section 5.2.8 defines it: over the pseudo-header and the VRRP message. a.Checksum is
// left as it was.
func (a *Advert) Marshal(src, dst netip.Addr) ([]byte, error) {
	c := *a
	c.Checksum = 0
	b, err := c.MarshalBinary()
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint16(b[6:8], Checksum(b, src, dst))
	return b, nil
}

// Parse validates and decodes a received VRRP message: the checks of RFC 5798 section 7.1 that
// need nothing but the packet (TTL 255, version 3, type advertisement, a length that holds the
// addresses, the checksum with the pseudo-header of src and dst). ttl is the IP TTL (hop limit)
// the packet arrived with. The virtual router ID and the addresses are the caller's to check.
func Parse(b []byte, src, dst netip.Addr, ttl int) (*Advert, error) {
	if ttl != TTL {
		return nil, ErrTTL
	}
	src, dst = src.Unmap(), dst.Unmap()
	if src.Is4() != dst.Is4() {
		return nil, ErrFamily
	}
	a := new(Advert)
	if err := a.unmarshal(b, !src.Is4()); err != nil {
		return nil, err
	}
	// Only the message proper is covered; the IP layer's length is the message's length.
	if Checksum(b, src, dst) != 0 {
		return nil, ErrChecksum
	}
	return a, nil
}

// Checksum returns the Internet checksum (RFC 1071) of the pseudo-header for an IP packet from
// src to dst with protocol 112, followed by msg. Over a message whose checksum field is zero it
// is the value to put there; over a message with a correct checksum it is zero.
func Checksum(msg []byte, src, dst netip.Addr) uint16 {
	src, dst = src.Unmap(), dst.Unmap()
	var sum uint32
	if src.Is4() {
		// IPv4 pseudo-header: source, destination, zero, protocol, length (RFC 768 style).
		s, d := src.As4(), dst.As4()
		sum = sum16(sum, s[:])
		sum = sum16(sum, d[:])
		sum += IPProtocol
		sum += uint32(len(msg))
	} else {
		// IPv6 pseudo-header (RFC 8200 section 8.1): 32-bit length, next header.
		s, d := src.As16(), dst.As16()
		sum = sum16(sum, s[:])
		sum = sum16(sum, d[:])
		sum += uint32(len(msg)) >> 16
		sum += uint32(len(msg)) & 0xffff
		sum += IPProtocol
	}
	sum = sum16(sum, msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// sum16 adds b to sum as big-endian 16-bit words, padding an odd last byte with zero.
func sum16(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
		if sum > 0xffff0000 {
			sum = sum>>16 + sum&0xffff
		}
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}
