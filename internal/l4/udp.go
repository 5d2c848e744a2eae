package l4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/guard"
)

// maxDatagram is the largest UDP payload (65535 minus the IPv4 and UDP headers).
const maxDatagram = 65507

// UDPHandler is one udp frontend's compiled configuration.
type UDPHandler struct {
	Name    string
	Backend *Backend
	// IdleTimeout ends a flow that saw no datagram either way for this long.
	IdleTimeout time.Duration
	// MaxFlows caps the flow table.
	MaxFlows int
	// PerPacket balances each datagram on its own (DNS); otherwise each flow sticks to its
	// server.
	PerPacket bool
	Logger    *slog.Logger
	// AccessLog receives one Session per flow when it ends; nil: none.
	AccessLog SessionLog
	// Guard applies the access lists, the live deny list and packet_rate_per_source to every
	// datagram, and counts refusals; nil: none.
	Guard *guard.Guard
}

// UDPStats counts a udp frontend's traffic.
type UDPStats struct {
	Flows       atomic.Int64 // open flows
	FlowsOpened atomic.Uint64
	Datagrams   atomic.Uint64 // from clients
	Replies     atomic.Uint64 // to clients
	Dropped     atomic.Uint64 // no server, flow table full, send failed
	// BytesIn and BytesOut count the payload bytes forwarded to servers and back to clients.
	BytesIn, BytesOut atomic.Uint64
}

// UDPServer proxies datagrams from one listening socket. Each client address gets a flow: its
// own socket towards the server (connected to one chosen server, or unconnected in per-packet
// mode), whose replies go back to that client from the listening socket, so the client sees
// answers from the address it wrote to.
type UDPServer struct {
	pc      *net.UDPConn
	handler atomic.Pointer[UDPHandler]
	Stats   UDPStats

	mu     sync.Mutex
	flows  map[netip.AddrPort]*flow
	closed bool
	wg     sync.WaitGroup
}

type flow struct {
	client   netip.AddrPort
	b        *Backend
	srv      *backend.Server // nil in per-packet mode
	up       *net.UDPConn
	last     atomic.Int64 // Unix nanoseconds of the last datagram either way
	closed   atomic.Bool
	perPkt   bool
	released sync.Once
	// For the access log: the handler the flow started with, when, and the payload bytes each way.
	h       *UDPHandler
	start   time.Time
	in, out atomic.Int64
	// ticket counts the flow and its datagrams in the frontend's source table (top sources);
	// nil without a guard.
	ticket *guard.Ticket
}

// NewUDPServer serves pc with h.
func NewUDPServer(pc *net.UDPConn, h *UDPHandler) *UDPServer {
	s := &UDPServer{pc: pc, flows: map[netip.AddrPort]*flow{}}
	s.handler.Store(h)
	return s
}

// SetHandler swaps the configuration for new flows; open flows keep their server.
func (s *UDPServer) SetHandler(h *UDPHandler) { s.handler.Store(h) }

// Serve reads datagrams until the socket is closed.
func (s *UDPServer) Serve() error {
	buf := make([]byte, maxDatagram+1)
	for {
		n, client, err := s.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// ICMP errors for earlier replies (a client that went away) surface here on some
			// kernels; they are not the listener's fault.
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return err
		}
		s.Stats.Datagrams.Add(1)
		s.datagram(buf[:n], client)
	}
}

func (s *UDPServer) datagram(p []byte, client netip.AddrPort) {
	h := s.handler.Load()
	if g := h.Guard; g != nil && !g.Packet(client.Addr(), time.Now()) {
		s.Stats.Dropped.Add(1)
		return
	}
	s.mu.Lock()
	f := s.flows[client]
	if f != nil && f.srv != nil && !f.srv.AcceptsPinned() {
		// The flow's server went DOWN, was ejected or put in maintenance: the client's traffic
		// moves to a server that can take it (a WireGuard tunnel re-handshakes there).
		s.mu.Unlock()
		s.endFlow(f, TermServerUnavailable)
		s.mu.Lock()
		f = s.flows[client]
	}
	if f == nil {
		if s.closed {
			s.mu.Unlock()
			return
		}
		if len(s.flows) >= h.MaxFlows && h.MaxFlows > 0 {
			s.mu.Unlock()
			s.Stats.Dropped.Add(1)
			if h.Guard != nil {
				h.Guard.Refuse(guard.FlowLimit, client.Addr(), time.Now())
			}
			return
		}
		var err error
		f, err = s.newFlow(h, client)
		if err != nil {
			s.mu.Unlock()
			s.Stats.Dropped.Add(1)
			h.Logger.Debug("udp flow not opened", "frontend", h.Name, "client", client, "err", err)
			return
		}
		if h.Guard != nil {
			f.ticket = h.Guard.OpenFlow(client.Addr(), f.start)
		}
		s.flows[client] = f
		s.Stats.Flows.Add(1)
		s.Stats.FlowsOpened.Add(1)
		s.wg.Add(1)
		go s.replies(f, h)
	}
	s.mu.Unlock()
	f.last.Store(time.Now().UnixNano())
	if f.ticket != nil {
		f.ticket.Source().Requests.Add(1)
	}
	if !f.perPkt {
		if _, err := f.up.Write(p); err != nil {
			s.Stats.Dropped.Add(1)
			return
		}
		s.countIn(f, f.srv, len(p))
		return
	}
	srv, err := f.b.pick(context.Background(), f.b.key(client), nil, false)
	if err != nil {
		s.Stats.Dropped.Add(1)
		return
	}
	f.b.release(srv) // a datagram holds no slot; the pick only counted it
	dst, err := f.b.udpAddr(srv)
	if err != nil {
		s.Stats.Dropped.Add(1)
		return
	}
	if _, err := f.up.WriteToUDPAddrPort(p, dst); err != nil {
		s.Stats.Dropped.Add(1)
		return
	}
	s.countIn(f, srv, len(p))
}

// countIn counts a datagram of n bytes forwarded to srv.
func (s *UDPServer) countIn(f *flow, srv *backend.Server, n int) {
	f.in.Add(int64(n))
	s.Stats.BytesIn.Add(uint64(n))
	srv.BytesIn.Add(uint64(n))
}

// newFlow opens the flow's upstream socket: connected to a chosen server, or unconnected for
// per-packet balancing.
func (s *UDPServer) newFlow(h *UDPHandler, client netip.AddrPort) (*flow, error) {
	b := h.Backend
	f := &flow{client: client, b: b, perPkt: h.PerPacket, h: h, start: time.Now()}
	if h.PerPacket {
		network := "udp4"
		if !client.Addr().Unmap().Is4() {
			network = "udp"
		}
		up, err := net.ListenUDP(network, nil)
		if err != nil {
			return nil, err
		}
		f.up = up
		return f, nil
	}
	c, srv, err := b.dial(context.Background(), "udp", client, func(msg string, args ...any) {
		h.Logger.Warn(msg, append([]any{"frontend", h.Name}, args...)...)
	})
	if err != nil {
		return nil, err
	}
	f.up, f.srv = c.(*net.UDPConn), srv
	return f, nil
}

// replies forwards the flow's server replies to its client until the flow idles out or fails.
func (s *UDPServer) replies(f *flow, h *UDPHandler) {
	defer s.wg.Done()
	term := TermError
	defer func() {
		if p := recover(); p != nil {
			h.Logger.Error("udp flow panicked", "frontend", h.Name, "panic", p, "stack", string(debug.Stack()))
		}
		s.endFlow(f, term)
	}()
	buf := make([]byte, maxDatagram+1)
	idle := h.IdleTimeout
	for {
		f.up.SetReadDeadline(time.Now().Add(idle))
		var n int
		var err error
		if f.perPkt {
			n, _, err = f.up.ReadFromUDPAddrPort(buf)
		} else {
			n, err = f.up.Read(buf)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || f.closed.Load() {
				term = TermShutdown // Close, or endFlow already named the reason
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if time.Duration(time.Now().UnixNano()-f.last.Load()) < idle {
					continue
				}
				term = TermIdle
				return // idle: the flow expires
			}
			if errors.Is(err, syscall.ECONNREFUSED) && f.srv != nil {
				// ICMP port unreachable: nothing listens on the server. End the flow so the
				// client's next datagram picks a server again.
				f.srv.Failures.Add(1)
				f.b.Outlier.Failure(f.srv, err)
				term = TermServerUnreachable
				return
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return
		}
		f.last.Store(time.Now().UnixNano())
		if f.srv != nil {
			f.b.Outlier.Success(f.srv)
		}
		if _, err := s.pc.WriteToUDPAddrPort(buf[:n], f.client); err == nil {
			s.Stats.Replies.Add(1)
			f.out.Add(int64(n))
			s.Stats.BytesOut.Add(uint64(n))
			if f.srv != nil {
				f.srv.BytesOut.Add(uint64(n))
			}
		}
	}
}

// endFlow ends a flow once; term says why, for the access log.
func (s *UDPServer) endFlow(f *flow, term string) {
	f.released.Do(func() {
		f.closed.Store(true)
		f.up.Close()
		if f.srv != nil {
			f.b.release(f.srv)
		}
		f.ticket.Done()
		s.mu.Lock()
		if s.flows[f.client] == f {
			delete(s.flows, f.client)
		}
		s.mu.Unlock()
		s.Stats.Flows.Add(-1)
		if f.h != nil && f.h.AccessLog != nil {
			sess := &Session{
				Start: f.start, Transport: "udp", Client: f.client, Frontend: f.h.Name, Backend: f.b.Name,
				BytesIn: f.in.Load(), BytesOut: f.out.Load(), Duration: time.Since(f.start), Termination: term,
			}
			if f.srv != nil {
				sess.Server = f.srv.Name
			}
			f.h.AccessLog.LogSession(sess)
		}
	})
}

// FlowCount is the number of open flows.
func (s *UDPServer) FlowCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flows)
}

// Close stops serving: the socket closes and every flow ends.
func (s *UDPServer) Close() error {
	s.mu.Lock()
	s.closed = true
	flows := make([]*flow, 0, len(s.flows))
	for _, f := range s.flows {
		flows = append(flows, f)
	}
	s.mu.Unlock()
	err := s.pc.Close()
	for _, f := range flows {
		f.closed.Store(true)
		f.up.Close()
	}
	s.wg.Wait()
	return err
}

// udpAddr is a server's address for per-packet sends, parsed (or resolved, for a host name) on
// its first datagram and kept for the life of the Backend, so the datagram path does no DNS; a
// reload builds a new Backend and so resolves again. A failed resolution is not kept.
func (b *Backend) udpAddr(s *backend.Server) (netip.AddrPort, error) {
	if ap, ok := b.udpAddrs.Load(s); ok {
		return ap.(netip.AddrPort), nil
	}
	ap, err := netip.ParseAddrPort(s.Address)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", s.Address)
		if rerr != nil {
			return netip.AddrPort{}, rerr
		}
		ap = ua.AddrPort()
	}
	b.udpAddrs.Store(s, ap)
	return ap, nil
}
