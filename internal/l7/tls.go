package l7

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/rawio"
	"github.com/waage/waage/internal/tlsx"
)

// TLS on both sides of the proxy: termination on HTTPS frontends (the handshake, ALPN, client
// certificates), redirect_https on plaintext ones, and TLS to servers for the upstream pool.
//
// TLS connections never take the plaintext fast paths: no raw system calls (rawio) and no
// parking of idle connections in the epoll set, because a tls.Conn may hold decrypted bytes that
// the socket no longer shows.

// h2Served is set (by the HTTP/2 server, in an init function of its file) once serveH2 serves
// HTTP/2. Until then HTTPS frontends offer only http/1.1, so no client negotiates a protocol
// that would be closed at once.
var h2Served bool

// ServesHTTP2 reports whether this build serves HTTP/2 on HTTPS frontends.
func ServesHTTP2() bool { return h2Served }

// ALPN returns the application protocols an HTTPS frontend offers, best first: h2 when the
// frontend wants HTTP/2 (tls.http2) and this build serves it, and http/1.1.
func ALPN(http2 bool) []string {
	if http2 && h2Served {
		return []string{"h2", "http/1.1"}
	}
	return []string{"http/1.1"}
}

// ClientCertField is the request field that carries the verified client certificate's subject
// to servers. A client-sent field of this name is always removed, TLS or not, so servers can
// trust it.
const ClientCertField = "X-Client-Cert-Subject"

// clientCertLower is ClientCertField for eqFold.
const clientCertLower = "x-client-cert-subject"

// acmeChallengePrefix is where ACME HTTP-01 challenges are asked for; redirect_https leaves
// these requests to the routes, since the CA asks over plain http.
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// prefixConn returns pre before reading from Conn: the bytes that arrived with a PROXY header
// and start the TLS ClientHello.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite keeps the half-close of the TCP connection underneath (lingering close).
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("connection cannot half-close")
}

// scheme is the scheme of this connection's requests, for X-Forwarded-Proto and Forwarded. It is
// the connection's own: a reload that turns TLS on or off for the frontend leaves the connections
// already open as they were.
func (cc *clientConn) scheme(h *Handler) string {
	switch {
	case cc.tls != nil:
		return "https"
	case h.TLS != nil:
		return "http"
	}
	return h.Scheme
}

// setConn replaces the connection, under the server's lock: Shutdown reads cc.c from another
// goroutine.
func (cc *clientConn) setConn(c net.Conn) {
	cc.s.mu.Lock()
	cc.c = c
	cc.s.mu.Unlock()
}

// handshake terminates TLS within the header timeout, then makes the tls.Conn the connection
// that HTTP is read from and written to. It returns false when the handshake failed.
func (cc *clientConn) handshake(h *Handler) bool {
	// The TLS records go through raw system calls (rawio.NetConn); cc.c stays the TCP
	// connection for what needs it as such.
	tc := tls.Server(rawio.NewNetConn(cc.c), h.TLS)
	cc.c.SetDeadline(time.Now().Add(h.headerTimeout()))
	// No request is in progress during the handshake: Shutdown may cut it short (it wakes
	// connections that are not busy with a past read deadline).
	cc.busy.Store(false)
	if cc.s.closing.Load() {
		return false
	}
	err := tc.Handshake()
	cc.busy.Store(true)
	if err != nil {
		h.logger().Debug("TLS handshake failed; closed", "frontend", h.Name, "client", cc.remote, "err", err)
		return false
	}
	// The handshake's deadlines stay set; zero rdl and wdl make the request loop set its own
	// before the next read and write.
	cc.rdl, cc.wdl = time.Time{}, time.Time{}
	cc.tls = tc
	cc.setConn(tc)
	cc.rd.conn, cc.rd.raw = tc, nil
	cc.w.conn, cc.w.raw = tc, nil
	if h.ClientSubject != nil {
		cs := tc.ConnectionState()
		// Only a certificate that verified against client_ca is named (client_auth optional
		// lets clients without one in).
		if len(cs.VerifiedChains) > 0 {
			if sub := fieldSafe(h.ClientSubject(&cs)); len(sub) > 0 {
				cc.certSubject = sub
			}
		}
	}
	return true
}

// fieldSafe returns s as a header field value: control characters (which a field may not
// carry, and which would split it) become '?'.
func fieldSafe(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			b[i] = '?'
		}
	}
	return b
}

// respondText answers 200 with body as text/plain (an ACME HTTP-01 key authorization).
func (cc *clientConn) respondText(h *Handler, ex *exchange, body string) bool {
	w := cc.writer()
	cc.armWrite(time.Now(), h.idleTimeout())
	w.WriteString("HTTP/1.1 200 OK\r\nCache-Control: no-store")
	return cc.finishSimple(h, ex, 200, "text/plain", body, false)
}

// redirectHTTPS answers a request on a redirect_https frontend with 308 Permanent Redirect to the
// same host (without its port) and target on https. 308, not 301: the method and body stay as
// they are (a POST is not turned into a GET). It returns whether the connection may stay open.
func (cc *clientConn) redirectHTTPS(h *Handler, ex *exchange) bool {
	req := &ex.req
	if len(ex.host) == 0 {
		return cc.respondError(h, ex, 400, "redirect to https needs a Host", true)
	}
	w := cc.writer()
	cc.armWrite(time.Now(), h.idleTimeout())
	w.WriteString("HTTP/1.1 308 Permanent Redirect\r\nLocation: https://")
	w.Write(ex.host)
	if p := h.HTTPSPort; p > 0 && p != 443 {
		var buf [8]byte
		w.WriteByte(':')
		w.Write(strconv.AppendInt(buf[:0], int64(p), 10))
	}
	switch {
	case req.asterisk || len(req.path) == 0:
		w.WriteByte('/')
	default:
		w.Write(req.path)
	}
	if req.query != nil {
		w.WriteByte('?')
		w.Write(req.query)
	}
	return cc.finishSimple(h, ex, 308, "text/plain; charset=utf-8", "308 Permanent Redirect: this site is served over https\n", false)
}

// finishSimple completes an answer that waage makes itself, after its status line and own header
// fields (written without the final CRLF): the content fields, the connection's fate and the
// body, then counts and logs it. A body the client sends is not read: the connection closes
// after the answer (also when closeConn asks for it), lingering so that bytes the client may
// still be sending do not turn the close into a reset that destroys the answer. It returns
// whether the connection may stay open.
func (cc *clientConn) finishSimple(h *Handler, ex *exchange, status int, contentType, body string, closeConn bool) bool {
	req := &ex.req
	w := cc.writer()
	if contentType != "" { // "": an empty body, such as a redirect's
		w.WriteString("\r\nContent-Type: ")
		w.WriteString(contentType)
	}
	w.WriteString("\r\nContent-Length: ")
	var buf [8]byte
	w.Write(strconv.AppendInt(buf[:0], int64(len(body)), 10))
	unread := cc.hasUnreadBody(req)
	if closeConn || unread || req.close {
		cc.linger = closeConn || unread
		closeConn = true
		w.WriteString("\r\nConnection: close")
	} else if req.minor == 0 {
		w.WriteString("\r\nConnection: keep-alive")
	}
	w.WriteString("\r\n\r\n")
	if !ex.isHead {
		w.WriteString(body)
		ex.sent = int64(len(body))
	}
	err := w.Flush()
	ex.status = status
	cc.s.Stats.Status[status/100].Add(1)
	cc.finishLog(h, ex)
	return err == nil && !closeConn
}

// upstreamTLS builds the TLS client configuration for a backend's HTTP/1.1 servers; nil when
// they speak plaintext. ServerName stays empty unless configured: each server's pool fills in
// its own host. key identifies the settings and the files' contents, so a reload that changes
// neither keeps the pooled connections (and resumable sessions) made with them.
func upstreamTLS(bc config.Backend) (cfg *tls.Config, key string, err error) {
	ct := bc.ServerTLS()
	if ct == nil || bc.Protocol != "" && bc.Protocol != "http1" {
		return nil, "", nil
	}
	cfg, err = tlsx.ClientConfig(ct)
	if err != nil {
		return nil, "", fmt.Errorf("backend %q: %w", bc.Name, err)
	}
	// This pool speaks HTTP/1.1; saying so keeps a server that prefers h2 from choosing it.
	cfg.NextProtos = []string{"http/1.1"}
	// Resumed sessions make new connections (after an idle timeout, under load) cheaper for
	// both ends.
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64 * max(1, len(bc.Servers)))
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %q %v\x00", ct.ServerName, ct.CA, ct.Cert, ct.Key, ct.InsecureSkipVerify)
	for _, f := range []string{ct.CA, ct.Cert, ct.Key} {
		if f != "" {
			b, _ := os.ReadFile(f) // read fine a moment ago in ClientConfig
			h.Write(b)
			h.Write([]byte{0})
		}
	}
	return cfg, string(h.Sum(nil)), nil
}

// serverTLS returns cfg for the server at addr: ServerName, unless configured, is the host of
// the address (an IP address is then verified against the certificate's IP names).
func serverTLS(cfg *tls.Config, addr string) *tls.Config {
	if cfg == nil || cfg.ServerName != "" {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c := cfg.Clone()
	c.ServerName = host
	return c
}

// startTLS runs the TLS handshake on a new server connection whose handshake was deferred until
// its PROXY header was written (the header goes first, in plaintext). From then on the
// connection is read and written through TLS.
func (uc *upConn) startTLS(timeout time.Duration) error {
	cfg := uc.pendingTLS
	uc.pendingTLS = nil
	if err := uc.w.Flush(); err != nil {
		return err
	}
	tc, err := clientHandshake(uc.tcp, cfg, timeout)
	if err != nil {
		return err
	}
	uc.useTLS(tc)
	return nil
}

// useTLS makes tc the connection for all reads and writes; raw system calls are off.
func (uc *upConn) useTLS(tc *tls.Conn) {
	uc.conn = tc
	uc.rd.conn, uc.rd.raw = tc, nil
	uc.w.conn, uc.w.raw = tc, nil
}

// clientHandshake runs a TLS client handshake on c within timeout.
func clientHandshake(c net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	tc := tls.Client(c, cfg)
	c.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	c.SetDeadline(time.Time{})
	return tc, nil
}

// tlsGens numbers the TLS configurations of pools; a pooled connection dialed under another
// number than its pool's current one (a reload changed the TLS settings) is not reused.
var tlsGens atomic.Uint64
