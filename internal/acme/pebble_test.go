package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waage/waage/internal/acme/acmetest"
)

// This file holds the tests' challenge servers, logger and Manager runner; pebble itself runs
// through package acmetest, which the runtime's end-to-end tests share.

// challengeServers are the listeners the CA validates against, answering for whichever
// Manager is current (they exist before the Manager, whose config needs pebble's URL, which
// needs their ports).
type challengeServers struct {
	m         atomic.Pointer[Manager]
	httpPort  int
	tlsPort   int
	httpHits  atomic.Int64 // challenge requests answered with a key authorization
	alpnHits  atomic.Int64 // acme-tls/1 handshakes answered with a challenge certificate
	httpAllow atomic.Bool  // when false, the HTTP server answers 404 to everything

	// pushed makes the TLS server answer from push, filled through Manager.OnTLSALPN01,
	// instead of asking Manager.TLSALPN01.
	pushed bool
	pmu    sync.Mutex
	push   map[string]*tls.Certificate
	events []string // "set NAME" / "clear NAME", in order
}

// use makes m the Manager the servers answer for, and registers the push hook.
func (s *challengeServers) use(m *Manager) {
	m.OnTLSALPN01(func(name string, c *tls.Certificate) {
		s.pmu.Lock()
		defer s.pmu.Unlock()
		if s.push == nil {
			s.push = map[string]*tls.Certificate{}
		}
		if c == nil {
			delete(s.push, name)
			s.events = append(s.events, "clear "+name)
		} else {
			s.push[name] = c
			s.events = append(s.events, "set "+name)
		}
	})
	s.m.Store(m)
}

func (s *challengeServers) pushEvents() []string {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return slices.Clone(s.events)
}

// serveChallenges opens the HTTP-01 server (when withHTTP) and the TLS-ALPN-01 server (when
// withTLS) on 127.0.0.1. A challenge type without a server gets a port nothing listens on,
// so the CA's connection is refused.
func serveChallenges(t *testing.T, withHTTP, withTLS bool) *challengeServers {
	t.Helper()
	s := &challengeServers{}
	s.httpAllow.Store(true)
	if withHTTP {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.httpPort = l.Addr().(*net.TCPAddr).Port
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
			m := s.m.Load()
			if !ok || m == nil || !s.httpAllow.Load() {
				http.NotFound(w, r)
				return
			}
			ka, ok := m.HTTP01(token)
			if !ok {
				http.NotFound(w, r)
				return
			}
			s.httpHits.Add(1)
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, ka)
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	} else {
		s.httpPort = acmetest.FreePort(t)
	}
	if withTLS {
		l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				if m := s.m.Load(); m != nil {
					c := m.TLSALPN01(hello)
					if s.pushed {
						// Serve from what OnTLSALPN01 pushed, as a TLS store that keeps
						// its own challenge table does.
						s.pmu.Lock()
						c = nil
						if slices.Contains(hello.SupportedProtos, ALPNProto) {
							c = s.push[strings.ToLower(hello.ServerName)]
						}
						s.pmu.Unlock()
					}
					if c != nil {
						s.alpnHits.Add(1)
						return &tls.Config{Certificates: []tls.Certificate{*c}, NextProtos: []string{ALPNProto}}, nil
					}
				}
				return nil, fmt.Errorf("no certificate for %q %v", hello.ServerName, hello.SupportedProtos)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		s.tlsPort = l.Addr().(*net.TCPAddr).Port
		var wg sync.WaitGroup
		t.Cleanup(func() { l.Close(); wg.Wait() })
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Second))
					c.(*tls.Conn).Handshake()
					io.Copy(io.Discard, c) // the CA closes after the handshake
				})
			}
		})
	} else {
		s.tlsPort = acmetest.FreePort(t)
	}
	return s
}

// testLogger logs to the test's output and to a buffer the test can search.
func testLogger(t *testing.T) (*slog.Logger, *acmetest.SyncBuffer) {
	buf := &acmetest.SyncBuffer{}
	return slog.New(slog.NewTextHandler(io.MultiWriter(buf, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runner runs a Manager in the background and collects what it delivers through onCert.
type runner struct {
	certs  chan *tls.Certificate
	cancel context.CancelFunc
	done   chan struct{}
}

func startRun(t *testing.T, m *Manager) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{certs: make(chan *tls.Certificate, 16), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		m.Run(ctx, func(c *tls.Certificate) { r.certs <- c })
	}()
	t.Cleanup(r.stop)
	return r
}

// stop cancels Run and waits for it to return, which it must do promptly.
func (r *runner) stop() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		panic("acme: Run did not return after its context was cancelled")
	}
}

func (r *runner) next(t *testing.T, timeout time.Duration) *tls.Certificate {
	t.Helper()
	select {
	case c := <-r.certs:
		return c
	case <-time.After(timeout):
		t.Fatalf("no certificate delivered within %v", timeout)
		return nil
	}
}

// verifyCert checks that c is a chain pebble's root vouches for, for every domain, and that its
// key belongs to the leaf.
func verifyCert(t *testing.T, c *tls.Certificate, roots *x509.CertPool, domains ...string) {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(ic)
	}
	for _, d := range domains {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: d, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("certificate does not verify for %s against pebble's root: %v", d, err)
		}
	}
	pub, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || pub.Curve != elliptic.P256() || !pub.PublicKey.Equal(leaf.PublicKey) {
		t.Errorf("certificate key is %T, not the leaf's ECDSA P-256 key", c.PrivateKey)
	}
}
