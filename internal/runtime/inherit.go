package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/waage/waage/internal/listener"
)

// Socket names in a binary upgrade: the transport and the listen key, so that the new process
// finds the socket of each address (or, for port 0, each frontend's entry) it is configured with.
func tcpSocketName(key string) string { return "tcp " + key }
func udpSocketName(key string) string { return "udp " + key }

// Inherit gives the runtime the sockets the process it replaces handed over. Apply adopts those
// whose address the configuration still has instead of binding them again; the caller closes
// the rest (in.Close) once the first Apply succeeded.
func (r *Runtime) Inherit(in *listener.Inherited) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inherited = in
}

// listenTCP adopts the inherited socket for key, or binds addr (with IP_FREEBIND if freebind).
func (r *Runtime) listenTCP(key, addr string, freebind bool) (net.Listener, error) {
	ln, err := r.inherited.Listener(tcpSocketName(key))
	if ln != nil || err != nil {
		if err == nil {
			r.logger.Info("adopted inherited listener", "addr", ln.Addr().String())
		}
		return ln, err
	}
	if freebind {
		lc := net.ListenConfig{Control: freebindControl}
		return lc.Listen(context.Background(), "tcp", addr)
	}
	return net.Listen("tcp", addr)
}

// listenUDP adopts the inherited socket for key, or binds ua (with IP_FREEBIND if freebind).
func (r *Runtime) listenUDP(key string, ua *net.UDPAddr, freebind bool) (*net.UDPConn, error) {
	pc, err := r.inherited.UDP(udpSocketName(key))
	if pc != nil || err != nil {
		if err == nil {
			r.logger.Info("adopted inherited listener", "addr", pc.LocalAddr().String(), "transport", "udp")
		}
		return pc, err
	}
	if freebind {
		lc := net.ListenConfig{Control: freebindControl}
		pc, err := lc.ListenPacket(context.Background(), "udp", ua.String())
		if err != nil {
			return nil, err
		}
		return pc.(*net.UDPConn), nil
	}
	return net.ListenUDP("udp", ua)
}

// Sockets returns duplicates of every listening socket (TCP listeners and UDP sockets) by name,
// for a new process to take over in a binary upgrade. The caller closes them once the new process
// has them. The runtime keeps serving its own descriptors: the sockets are shared, so connections
// that arrive meanwhile wait in the kernel's queue for whichever process accepts first.
func (r *Runtime) Sockets() (map[string]*os.File, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]*os.File, len(r.listeners)+len(r.udp))
	var errs []error
	add := func(name string, c any) {
		sc, ok := c.(syscall.Conn)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %T has no file descriptor", name, c))
			return
		}
		f, err := listener.Dup(sc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		out[name] = f
	}
	for key, bl := range r.listeners {
		add(tcpSocketName(key), bl.ln)
	}
	for key, ub := range r.udp {
		add(udpSocketName(key), ub.pc)
	}
	if err := errors.Join(errs...); err != nil {
		for _, f := range out {
			f.Close()
		}
		return nil, err
	}
	return out, nil
}

// StopAccepting closes every TCP listener of this process, and leaves the connections it has
// accepted to be served: after a binary upgrade the new process accepts on the same sockets, so
// nothing is refused. Shutdown follows once connections accepted just before have had a moment
// to send their first request; Shutdown closes a connection that has not.
func (r *Runtime) StopAccepting() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, bl := range r.listeners {
		bl.owner.srv.Detach(bl.ln)
		bl.ln.Close()
		delete(r.listeners, key)
	}
}
