//go:build !linux

package l7

import (
	"errors"
	"net"
)

// rawIO is the raw-syscall socket I/O of rawio_linux.go; elsewhere net.Conn is used.
type rawIO struct{}

func newRawIO(net.Conn) *rawIO { return nil }

func (*rawIO) read([]byte) (int, error) { panic("unreachable") }

func (*rawIO) write(a, b []byte) (int, error) { panic("unreachable") }

func Pump(src, dst *Conn, buf []byte, touch func()) (int64, error) { panic("unreachable") }

// ErrBulk is Pump's report that the traffic is bulk.
var ErrBulk = errors.New("rawio: bulk transfer")
