//go:build !linux

package vrrp

import (
	"errors"
	"net/netip"
)

// errUnsupported is what the network parts return off Linux: raw sockets for protocol 112 and
// netlink are Linux's. The state machine and the packets work everywhere.
var errUnsupported = errors.New("vrrp: only supported on Linux")

func openSocket(Config) (Transport, error) { return nil, errUnsupported }

func linkUp(string) bool { return false }

// NetlinkAddresses is the Linux address manager; elsewhere every call fails.
type NetlinkAddresses struct{}

// NewNetlinkAddresses returns an address manager that fails off Linux.
func NewNetlinkAddresses(string) *NetlinkAddresses { return &NetlinkAddresses{} }

// Add fails off Linux.
func (*NetlinkAddresses) Add([]netip.Prefix) error { return errUnsupported }

// Remove does nothing off Linux.
func (*NetlinkAddresses) Remove([]netip.Prefix) error { return nil }

// Announce fails off Linux.
func (*NetlinkAddresses) Announce([]netip.Prefix) error { return errUnsupported }

// Present fails off Linux.
func (*NetlinkAddresses) Present([]netip.Prefix) (bool, error) { return false, errUnsupported }
