package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// sdNotify sends a state to the service manager (systemd's sd_notify protocol): one datagram on
// the unix socket named by $NOTIFY_SOCKET, a name starting with '@' being in the abstract
// namespace. Without $NOTIFY_SOCKET (not started by systemd with Type=notify) it does nothing.
//
// The states waage sends: READY=1 with MAINPID= once it serves (the MAINPID matters after a
// binary upgrade, where the new process takes over as the service's main process; the unit needs
// NotifyAccess=all for that), RELOADING=1 with MONOTONIC_USEC= before a reload and READY=1 after
// it, STOPPING=1 when a shutdown begins.
func sdNotify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// sdReloading is the message that starts a reload: systemd wants the CLOCK_MONOTONIC time with it.
func sdReloading() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000)
}

// sdReady is the message of a process that serves: it names itself the main process.
func sdReady(status string) string {
	return fmt.Sprintf("READY=1\nMAINPID=%d\nSTATUS=%s", os.Getpid(), status)
}
