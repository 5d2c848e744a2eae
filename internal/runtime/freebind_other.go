//go:build !linux

package runtime

import (
	"errors"
	"syscall"
)

// freebindControl refuses: binding an address that no interface has is Linux's IP_FREEBIND.
func freebindControl(string, string, syscall.RawConn) error {
	return errors.New("freebind is only supported on Linux")
}
