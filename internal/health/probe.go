package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/proxyproto"
)

// Target is what one check probes.
type Target struct {
	// Backend and Server name the server (for exec checks' environment and for messages).
	Backend, Server string
	// Address is host:port to check: the server's address with the check's address and port
	// applied. ICMP checks use only the host.
	Address string
}

// Prober runs one kind of check. Probe returns nil when the target is healthy, else an error
// whose text says why in a few words, for the state-change log line, for example
// "status 500 (expected 200-399)" or "connect: connection refused". The context carries the
// check's timeout as its deadline; Probe returns by then.
//
// One Prober serves every server that shares the check, each from its own goroutine, so Probe
// is safe for concurrent use.
type Prober interface {
	Probe(ctx context.Context, t Target) error
}

// NewProber compiles one check (already merged with a server's overrides, defaults applied,
// validated by package config). It fails only for what validation cannot see, such as an
// unreadable CA file.
//
// Everything that does not depend on the target (regexes, the CA pool, the client certificate,
// the HTTP transport) is built here once, so that a broken file is reported at load time rather
// than as a failing check, and each check costs only its network round trip.
func NewProber(hc *config.HealthCheck) (Prober, error) {
	if hc == nil {
		return nil, errors.New("health check: no configuration")
	}
	switch hc.Type {
	case "tcp", "":
		return newTCPProber(hc)
	case "http":
		return newHTTPProber(hc)
	case "grpc":
		return newGRPCProber(hc)
	case "udp":
		return newUDPProber(hc)
	case "icmp":
		return newICMPProber(hc)
	case "exec":
		return newExecProber(hc)
	case "none":
		return nil, errors.New(`health check type "none" has no prober`)
	default:
		return nil, fmt.Errorf("health check: unknown type %q", hc.Type)
	}
}

// maxRead bounds what a check reads of a reply or a body: enough for any sane status page or
// banner, small enough that a misbehaving server cannot make checks expensive.
const maxRead = 64 << 10

// matcher is a compiled expect or expect_body: a substring, or an RE2 regex when the configured
// text starts with "~".
type matcher struct {
	text string         // as configured, "~" included, for messages
	sub  []byte         // the substring, when re is nil
	re   *regexp.Regexp // the regex, for "~..."
}

// newMatcher compiles s; it returns nil for an empty s (nothing expected).
func newMatcher(field, s string) (*matcher, error) {
	if s == "" {
		return nil, nil
	}
	m := &matcher{text: s}
	if expr, ok := strings.CutPrefix(s, "~"); ok {
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", field, err)
		}
		m.re = re
	} else {
		m.sub = []byte(s)
	}
	return m, nil
}

func (m *matcher) match(b []byte) bool {
	if m.re != nil {
		return m.re.Match(b)
	}
	return bytes.Contains(b, m.sub)
}

// failure says how b failed m, after what (`reply "..."` or `body`).
func (m *matcher) failure(what string) error {
	if m.re != nil {
		return fmt.Errorf("%s does not match %s", what, m.text)
	}
	return fmt.Errorf("%s does not contain %s", what, strconv.Quote(m.text))
}

// quoteSnippet quotes the start of b (at most 60 bytes) Go-style, so that binary or multi-line
// replies stay on one log line.
func quoteSnippet(b []byte) string {
	const max = 60
	if len(b) <= max {
		return strconv.Quote(string(b))
	}
	return strconv.Quote(string(b[:max])) + "..."
}

// payload returns the bytes a tcp or udp check sends: Send, then SendHex decoded (validation
// allows only one of them). Whitespace in SendHex is ignored, so long queries can be grouped.
func payload(hc *config.HealthCheck) ([]byte, error) {
	b := []byte(hc.Send)
	if hc.SendHex != "" {
		h, err := hexDecode(hc.SendHex)
		if err != nil {
			return nil, fmt.Errorf("send_hex: %v", err)
		}
		b = append(b, h...)
	}
	return b, nil
}

func hexDecode(s string) ([]byte, error) {
	return hex.DecodeString(strings.Join(strings.Fields(s), ""))
}

// tlsFor returns base for one target: a copy with ServerName set to the target's host when the
// configuration names none. An IP host is verified against the certificate's IP SANs.
func tlsFor(base *tls.Config, address string) *tls.Config {
	if base.ServerName != "" {
		return base
	}
	cfg := base.Clone()
	cfg.ServerName = hostOf(address)
	return cfg
}

// hostOf returns the host of "host:port", "[v6]:port", "[v6]", or a bare host or IP.
func hostOf(address string) string {
	if h, _, err := net.SplitHostPort(address); err == nil {
		return h
	}
	if strings.HasPrefix(address, "[") && strings.HasSuffix(address, "]") {
		return address[1 : len(address)-1]
	}
	return address
}

// aLongTimeAgo is a deadline in the past, to make blocked I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

// deadliner is what bindContext needs of a connection.
type deadliner interface {
	SetDeadline(time.Time) error
}

// bindContext makes c's I/O end with ctx: at its deadline, or at once when it is canceled, so a
// check never outlives its timeout however the peer behaves. Call the returned stop when done.
func bindContext(ctx context.Context, c deadliner) (stop func() bool) {
	if ctx.Err() != nil {
		_ = c.SetDeadline(aLongTimeAgo) // AfterFunc would do it, but only soon
	} else if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
}

// errCanceled is returned when the check was canceled (waage stops checking the server) rather
// than timed out; its verdict does not matter, but it must not read like a server failure.
var errCanceled = errors.New("check canceled")

// isTimeout reports whether err is a deadline having passed, in any of the forms the net, tls
// and http packages report it.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// describe shortens a network error to its cause, for example "connect: connection refused"
// rather than "dial tcp 127.0.0.1:1: connect: connection refused": the log line names the
// server and address already.
func describe(err error) string {
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return "tls handshake: " + cve.Err.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var dnse *net.DNSError
	if errors.As(err, &dnse) {
		if dnse.IsNotFound {
			return "lookup " + dnse.Name + ": no such host"
		}
		if dnse.IsTimeout {
			return "lookup " + dnse.Name + ": timeout"
		}
		return "lookup " + dnse.Name + ": " + dnse.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		op := oe.Op
		if op == "dial" {
			op = "connect"
		}
		if isTimeout(oe) {
			return op + ": timeout"
		}
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return op + ": " + se.Err.Error()
		}
		return op + ": " + oe.Err.Error()
	}
	if isTimeout(err) {
		return "timeout"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed"
	}
	return err.Error()
}

// connectError is the error of a failed connect, distinguishing a canceled check (not the
// server's fault) from a failed one.
func connectError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return errCanceled
	}
	s := describe(err)
	if !strings.Contains(s, ":") {
		s = "connect: " + s
	}
	return errors.New(s)
}

// handshakeError is the error of a failed TLS handshake.
func handshakeError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return errCanceled
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return errors.New("tls handshake: " + cve.Err.Error())
	}
	if isTimeout(err) {
		return errors.New("tls handshake: timeout")
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return errors.New("tls handshake: " + describe(err))
	}
	if errors.Is(err, io.EOF) {
		return errors.New("tls handshake: connection closed")
	}
	return errors.New("tls handshake: " + strings.TrimPrefix(err.Error(), "tls: "))
}

// proxyVersion is the PROXY protocol version a check sends first (proxy_protocol, which
// defaults to the backend's): 0 for none (or "none").
func proxyVersion(hc *config.HealthCheck) int { return config.ProxyProtocolVersion(hc.ProxyProtocol) }

// dialCheck connects to address and, for servers that demand it, sends a PROXY protocol header
// with the LOCAL command, which the protocol defines for a proxy's own connections such as
// health checks: the server uses the connection's real addresses.
func dialCheck(ctx context.Context, address string, proxyVersion int) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil || proxyVersion == 0 {
		return c, err
	}
	hdr := proxyproto.Header{Version: proxyVersion, Command: proxyproto.Local}
	b, err := hdr.AppendBinary(nil)
	if err == nil {
		if dl, ok := ctx.Deadline(); ok {
			c.SetWriteDeadline(dl)
		}
		_, err = c.Write(b)
		c.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("PROXY header: %w", err)
	}
	return c, nil
}
