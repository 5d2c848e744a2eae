package l4

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/waage/waage/internal/relay"
)

// Session is one finished L4 session, a TCP connection or a UDP flow, as the access log writes
// it. Its fields are those of l7.Session, field for field, so the runtime hands it to the HTTP
// access log's buffered writer by a plain conversion.
type Session struct {
	Start time.Time
	// Transport is "tcp" or "udp".
	Transport string
	Client    netip.AddrPort
	Frontend  string
	// Backend and Server are empty when the session ended before one was chosen.
	Backend, Server string
	// BytesIn and BytesOut are the bytes from the client to the server and back.
	BytesIn, BytesOut int64
	Duration          time.Duration
	// Termination says how the session ended; see the Term constants.
	Termination string
}

// SessionLog receives one Session per finished connection or flow.
type SessionLog interface {
	LogSession(*Session)
}

// How sessions end, for the access log's termination field.
const (
	TermClosed            = "closed"             // both sides finished (EOF both ways)
	TermIdle              = "idle_timeout"       // nothing moved for the idle timeout
	TermError             = "error"              // a read or write failed (reset, broken pipe)
	TermShutdown          = "shutdown"           // waage stopped or the frontend went away
	TermRejected          = "rejected"           // untrusted source or a bad PROXY header
	TermTLSFailed         = "tls_failed"         // the TLS handshake failed
	TermNotTLS            = "not_tls"            // routing needed a ClientHello; something else came
	TermBadHello          = "bad_hello"          // a malformed ClientHello
	TermHandshakeTimeout  = "handshake_timeout"  // PROXY header or ClientHello did not arrive in time
	TermACME              = "acme_challenge"     // a TLS-ALPN-01 validation, done after the handshake
	TermNoRoute           = "no_route"           // no route matched and there is no default backend
	TermNoServer          = "no_server"          // no server usable
	TermQueueFull         = "queue_full"         // every server at max_connections, queue full or timed out
	TermConnectFailed     = "connect_failed"     // every connect attempt failed
	TermServerUnreachable = "server_unreachable" // UDP: ICMP port unreachable from the server
	TermServerUnavailable = "server_unavailable" // UDP: the flow's server went DOWN, drained to maintenance
)

// dialTermination names why dial failed.
func dialTermination(err error) string {
	switch {
	case errors.Is(err, errQueueFull), errors.Is(err, errQueueTimeout):
		return TermQueueFull
	case errors.Is(err, errNoServer):
		return TermNoServer
	}
	return TermConnectFailed
}

// relayTermination names how a relayed session ended.
func relayTermination(shutdown bool, why relay.End) string {
	switch {
	case shutdown:
		return TermShutdown
	case why == relay.EndIdle:
		return TermIdle
	case why == relay.EndError:
		return TermError
	}
	return TermClosed
}

// copyTermination names how a copied session ended from the errors of its two directions.
func copyTermination(shutdown bool, errs ...error) string {
	if shutdown {
		return TermShutdown
	}
	for _, err := range errs {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return TermIdle
		}
	}
	for _, err := range errs {
		// A direction that found its socket closed was ended by the other one's failure.
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			return TermError
		}
	}
	return TermClosed
}
