package runtime

import (
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// freebindControl sets IP_FREEBIND (IPV6_FREEBIND on IPv6 sockets) before bind, so a frontend
// with freebind can listen on an address that no interface has yet: a VRRP virtual IP while
// this node is backup, or a load balancer address routed here.
func freebindControl(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if strings.HasSuffix(network, "6") {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
