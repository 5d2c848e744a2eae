// Package acme obtains and renews a frontend's certificate from an ACME (RFC 8555) certificate
// authority such as Let's Encrypt, answering the CA's HTTP-01 and TLS-ALPN-01 challenges
// through the frontends that already listen on the ports the CA connects to.
//
// It uses the low-level client of golang.org/x/crypto/acme rather than autocert because waage
// keeps its own storage layout, routes challenges through its own listeners (which may serve
// many other names), and lets the operator choose the CA and the challenge types.
package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/waage/waage/internal/config"
)

// ALPNProto is the ALPN protocol a CA offers when it validates a TLS-ALPN-01 challenge (RFC
// 8737). A TLS frontend that sees it in a ClientHello asks TLSALPN01 for the certificate.
const ALPNProto = acme.ALPNProto

// The challenge types of config.ACME.Challenges.
const (
	HTTP01    = "http-01"
	TLSALPN01 = "tls-alpn-01"
)

// Defaults of the unexported Manager knobs (tests shorten some of them).
const (
	// retryMin is the first wait after a failed attempt; it doubles up to retryMax. Let's
	// Encrypt allows 5 failed validations per account, hostname and hour, so an hour at most
	// between attempts keeps a persistent failure well under that, and the first retries
	// quick enough to cover a transient CA or network outage.
	defaultRetryMin = time.Minute
	defaultRetryMax = time.Hour
	// orderTimeout bounds one attempt (order, challenges, finalize, download): a CA that stops
	// answering halfway must not stall renewal forever.
	defaultOrderTimeout = 10 * time.Minute
	// requestTimeout bounds one HTTP request to the CA.
	requestTimeout = 30 * time.Second
)

// Manager obtains a certificate for one frontend's domains and keeps it renewed. Create it with
// New, start Run in a goroutine, and let the frontends answer challenges through HTTP01 and
// TLSALPN01 while it runs. Its methods are safe for concurrent use.
type Manager struct {
	cfg     config.ACME
	domains []string // lower case, in config order; the first is the subject
	types   []string // challenge types in order of preference
	log     *slog.Logger
	hc      *http.Client

	accountPath string
	certPath    string
	keyPath     string

	retryMin, retryMax, orderTimeout time.Duration
	now                              func() time.Time

	// client is the registered account's client; only Run's goroutine touches it.
	client *acme.Client

	warnRenewBefore sync.Once // the renew_before warning is logged once, not at every renewal

	mu         sync.RWMutex
	http01     map[string]string           // token -> key authorization
	alpn       map[string]*tls.Certificate // domain -> TLS-ALPN-01 challenge certificate
	accountURI string
	alpnHook   func(name string, cert *tls.Certificate)
}

// New checks cfg, prepares the storage directory and the HTTP client for the CA. It does not
// contact the CA: Run does that. cfg.Storage must be absolute, as config.Load makes it.
func New(cfg *config.ACME, log *slog.Logger) (*Manager, error) {
	if cfg == nil {
		return nil, errors.New("acme: no configuration")
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.Directory == "" {
		return nil, errors.New("acme: directory: is required")
	}
	if len(cfg.Domains) == 0 {
		return nil, errors.New("acme: domains: at least one domain is required")
	}
	if !filepath.IsAbs(cfg.Storage) {
		return nil, fmt.Errorf("acme: storage %q: must be an absolute path", cfg.Storage)
	}
	m := &Manager{
		cfg:          *cfg,
		types:        slices.Clone(cfg.ChallengeTypes()),
		log:          log,
		retryMin:     defaultRetryMin,
		retryMax:     defaultRetryMax,
		orderTimeout: defaultOrderTimeout,
		now:          time.Now,
		http01:       map[string]string{},
		alpn:         map[string]*tls.Certificate{},
	}
	for _, d := range cfg.Domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if !slices.Contains(m.domains, d) {
			m.domains = append(m.domains, d)
		}
	}
	for _, t := range m.types {
		if t != HTTP01 && t != TLSALPN01 {
			return nil, fmt.Errorf("acme: challenges: unknown type %q", t)
		}
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CA != "" {
		pemCA, err := os.ReadFile(cfg.CA)
		if err != nil {
			return nil, fmt.Errorf("acme: ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemCA) {
			return nil, fmt.Errorf("acme: ca %s: no PEM certificate found", cfg.CA)
		}
		// Only the given CA: an operator who names a private CA means the ACME server's
		// certificate comes from it, not from any public one.
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	m.hc = &http.Client{Transport: tr, Timeout: requestTimeout}

	dir := filepath.Join(cfg.Storage, caDir(cfg.Directory))
	if err := os.MkdirAll(filepath.Join(dir, "certificates"), 0o700); err != nil {
		return nil, fmt.Errorf("acme: storage: %w", err)
	}
	m.accountPath = filepath.Join(dir, "account.key")
	m.certPath = filepath.Join(dir, "certificates", m.domains[0]+".crt")
	m.keyPath = filepath.Join(dir, "certificates", m.domains[0]+".key")
	return m, nil
}

// Domains returns the names the certificate covers, lower case, the subject first.
func (m *Manager) Domains() []string { return slices.Clone(m.domains) }

// AccountURI returns the URL of the ACME account once Run registered or found it, else "".
func (m *Manager) AccountURI() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.accountURI
}

// HTTP01 answers GET /.well-known/acme-challenge/TOKEN: the key authorization to send as the
// body (text/plain, status 200) and true, or false when the token belongs to no pending
// challenge (the frontend then routes the request as usual, or answers 404).
func (m *Manager) HTTP01(token string) (string, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ka, ok := m.http01[token]
	return ka, ok
}

// TLSALPN01 returns the challenge certificate for a ClientHello that offers ALPN "acme-tls/1"
// for a domain with a pending TLS-ALPN-01 challenge, else nil. The TLS frontend's
// GetConfigForClient consults it first and answers with a config holding only that certificate
// and NextProtos ["acme-tls/1"]; the CA closes the connection after the handshake.
func (m *Manager) TLSALPN01(hello *tls.ClientHelloInfo) *tls.Certificate {
	if hello == nil || !slices.Contains(hello.SupportedProtos, ALPNProto) {
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.alpn[name]
}

// Run delivers a certificate through onCert and keeps it renewed until ctx ends. A stored
// certificate for the domains is delivered at once (even one due for renewal, which is still
// better than none while the CA is asked); when none is stored, or it is due, a new one is
// ordered. A failed attempt is logged with the CA's problem detail and retried with backoff
// while the old certificate keeps being served. onCert runs on Run's goroutine. Run is called
// once per Manager; a reload that changes the acme config makes a new Manager.
func (m *Manager) Run(ctx context.Context, onCert func(*tls.Certificate)) {
	defer func() {
		if p := recover(); p != nil {
			m.log.Error("acme: panic; renewal stopped", "domains", m.domains, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	cert, err := loadPair(m.certPath, m.keyPath)
	switch {
	case err == nil && !m.covers(cert.Leaf):
		m.log.Info("acme: stored certificate does not cover the domains; ordering a new one",
			"file", m.certPath, "domains", m.domains, "has", cert.Leaf.DNSNames)
		cert = nil
	case err == nil && !m.now().Before(cert.Leaf.NotAfter):
		m.log.Info("acme: stored certificate has expired; ordering a new one", "file", m.certPath, "expired", cert.Leaf.NotAfter)
		cert = nil
	case err == nil:
		m.log.Info("acme: using stored certificate", "domains", m.domains, "expires", cert.Leaf.NotAfter,
			"renew_at", m.renewAt(cert.Leaf))
		onCert(cert)
	case errors.Is(err, os.ErrNotExist):
		cert = nil
	default:
		m.log.Warn("acme: stored certificate unusable; ordering a new one", "error", err)
		cert = nil
	}

	backoff := m.retryMin
	for {
		var wait time.Duration
		if cert == nil || !m.now().Before(m.renewAt(cert.Leaf)) {
			next, err := m.obtain(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				wait = backoff
				backoff = min(backoff*2, m.retryMax)
				if d, ok := rateLimited(err); ok && d > wait {
					wait = d // the CA said when to come back
				}
				attrs := []any{"domains", m.domains, "error", err, "retry_in", wait}
				if cert != nil {
					attrs = append(attrs, "serving_until", cert.Leaf.NotAfter)
				}
				m.log.Error("acme: obtaining certificate failed", attrs...)
			} else {
				cert = next
				backoff = m.retryMin
				m.log.Info("acme: next renewal", "domains", m.domains, "renew_at", m.renewAt(cert.Leaf))
				onCert(cert)
			}
		}
		if wait == 0 {
			// Wake at least hourly and compare with the wall clock again: the timer runs on
			// the monotonic clock, which stands still while the machine is suspended, so a
			// 60-day timer alone could fire days late.
			wait = min(m.renewAt(cert.Leaf).Sub(m.now()), maxSleep)
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// maxSleep is the longest Run waits without looking at the wall clock again.
const maxSleep = time.Hour

// rateLimited reports whether err (or one it wraps) is the CA's rateLimited problem, and the
// Retry-After it gave.
func rateLimited(err error) (time.Duration, bool) {
	var e *acme.Error
	if !errors.As(err, &e) {
		return 0, false
	}
	return acme.RateLimit(e)
}

// renewAt is when leaf is due for renewal: renew_before ahead of its expiry, by default a third
// of its lifetime (Let's Encrypt's own advice for 90-day certificates: renew at 60 days). A
// renew_before as long as the lifetime would make every new certificate due at once and order
// them in a loop, so it falls back to the default then.
func (m *Manager) renewAt(leaf *x509.Certificate) time.Time {
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	rb := m.cfg.RenewBefore.D()
	if rb > 0 && rb >= lifetime {
		m.warnRenewBefore.Do(func() {
			m.log.Warn("acme: renew_before is not shorter than the certificate's lifetime; renewing at a third of the lifetime instead",
				"renew_before", rb, "lifetime", lifetime)
		})
		rb = 0
	}
	if rb <= 0 {
		rb = lifetime / 3
	}
	return leaf.NotAfter.Add(-rb)
}

// covers reports whether leaf names exactly every configured domain (more names are fine).
func (m *Manager) covers(leaf *x509.Certificate) bool {
	for _, d := range m.domains {
		if !slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, d) }) {
			return false
		}
	}
	return true
}

// account returns a client for the registered account, registering it (terms accepted) on
// first use. The key is created once and stored, so a restart uses the same account: a CA
// answers a registration with a known key with the existing account.
func (m *Manager) account(ctx context.Context) (*acme.Client, error) {
	if m.client != nil {
		return m.client, nil
	}
	key, created, err := loadOrCreateKey(m.accountPath)
	if err != nil {
		return nil, fmt.Errorf("account key: %w", err)
	}
	if created {
		m.log.Info("acme: created account key", "file", m.accountPath)
	}
	c := &acme.Client{Key: key, DirectoryURL: m.cfg.Directory, HTTPClient: m.hc, UserAgent: "waage"}
	acct := &acme.Account{}
	if m.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + m.cfg.Email}
	}
	a, err := c.Register(ctx, acct, acme.AcceptTOS)
	switch {
	case errors.Is(err, acme.ErrAccountAlreadyExists):
		// Register already learnt the account URL from the CA's answer.
		a = &acme.Account{URI: string(c.KID)}
	case err != nil:
		return nil, fmt.Errorf("register account at %s: %w", m.cfg.Directory, err)
	default:
		m.log.Info("acme: account registered", "account", a.URI, "email", m.cfg.Email)
	}
	m.mu.Lock()
	m.accountURI = a.URI
	m.mu.Unlock()
	m.client = c
	return c, nil
}

// obtain orders a certificate, trying the challenge types in order: when validation with one
// type fails, a new order is placed with the remaining types (a failed authorization cannot be
// retried with another challenge, RFC 8555 section 7.1.6).
func (m *Manager) obtain(ctx context.Context) (*tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, m.orderTimeout)
	defer cancel()
	start := time.Now()
	client, err := m.account(ctx)
	if err != nil {
		return nil, err
	}
	remaining := slices.Clone(m.types)
	var errs []error
	for len(remaining) > 0 {
		cert, used, failed, err := m.order(ctx, client, remaining)
		if err == nil {
			m.log.Info("acme: certificate obtained", "domains", m.domains, "expires", cert.Leaf.NotAfter,
				"challenge", strings.Join(used, ","), "duration", time.Since(start).Round(time.Millisecond),
				"serial", cert.Leaf.SerialNumber.Text(16))
			return cert, nil
		}
		errs = append(errs, err)
		if failed == "" || ctx.Err() != nil {
			break
		}
		remaining = slices.DeleteFunc(remaining, func(t string) bool { return t == failed })
		attrs := []any{"domains", m.domains, "challenge", failed, "error", err}
		if len(remaining) > 0 {
			attrs = append(attrs, "next", remaining[0])
		}
		m.log.Warn("acme: challenge failed", attrs...)
	}
	// The account may be gone (a CA that forgot it, a deactivated account): register again
	// on the next attempt rather than failing forever with a stale one.
	m.client = nil
	return nil, errors.Join(errs...)
}

// order runs one order through: authorizations with the first of types each one offers, then
// finalization with a new key and the download. On failure, failed is the challenge type that
// the CA could not validate ("" when the failure was not a challenge's).
func (m *Manager) order(ctx context.Context, client *acme.Client, types []string) (cert *tls.Certificate, used []string, failed string, err error) {
	o, err := client.AuthorizeOrder(ctx, acme.DomainIDs(m.domains...))
	if err != nil {
		return nil, nil, "", fmt.Errorf("new order for %v: %w", m.domains, err)
	}
	// Every pending challenge is accepted before any is awaited, so the CA validates the
	// domains of a multi-domain order in parallel.
	type waiting struct {
		authz, domain, typ string
	}
	var wait []waiting
	defer m.clearChallenges()
	for _, u := range o.AuthzURLs {
		z, err := client.GetAuthorization(ctx, u)
		if err != nil {
			return nil, nil, "", fmt.Errorf("authorization %s: %w", u, err)
		}
		domain := z.Identifier.Value
		switch z.Status {
		case acme.StatusValid:
			continue // a recent authorization the CA reuses
		case acme.StatusPending:
		default:
			return nil, nil, "", fmt.Errorf("authorization for %s: status %q", domain, z.Status)
		}
		chal := pick(z.Challenges, types)
		if chal == nil {
			offered := make([]string, len(z.Challenges))
			for i, c := range z.Challenges {
				offered[i] = c.Type
			}
			return nil, nil, "", fmt.Errorf("authorization for %s: the CA offers %v, none of %v", domain, offered, types)
		}
		if err := m.present(client, chal, domain); err != nil {
			return nil, nil, chal.Type, fmt.Errorf("%s for %s: %w", chal.Type, domain, err)
		}
		if _, err := client.Accept(ctx, chal); err != nil {
			return nil, nil, chal.Type, fmt.Errorf("%s for %s: accept: %w", chal.Type, domain, err)
		}
		wait = append(wait, waiting{z.URI, domain, chal.Type})
		if !slices.Contains(used, chal.Type) {
			used = append(used, chal.Type)
		}
	}
	for _, w := range wait {
		if _, err := client.WaitAuthorization(ctx, w.authz); err != nil {
			return nil, nil, w.typ, fmt.Errorf("%s for %s: %w", w.typ, w.domain, err)
		}
	}
	orderURL := o.URI
	if o, err = client.WaitOrder(ctx, orderURL); err != nil {
		return nil, nil, "", fmt.Errorf("order %s: %w", orderURL, err)
	}

	key, err := newKey()
	if err != nil {
		return nil, nil, "", fmt.Errorf("generate certificate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: m.domains[0]},
		DNSNames: m.domains,
	}, key)
	if err != nil {
		return nil, nil, "", fmt.Errorf("create CSR: %w", err)
	}
	der, _, err := client.CreateOrderCert(ctx, o.FinalizeURL, csr, true)
	if err != nil {
		return nil, nil, "", fmt.Errorf("finalize order %s: %w", orderURL, err)
	}
	cert, err = m.store(der, key)
	if err != nil {
		return nil, nil, "", err
	}
	return cert, used, "", nil
}

// pick returns the first challenge of the preferred types that the authorization offers.
func pick(offered []*acme.Challenge, types []string) *acme.Challenge {
	for _, t := range types {
		for _, c := range offered {
			if c.Type == t {
				return c
			}
		}
	}
	return nil
}

// present makes the frontends answer chal for domain until clearChallenges.
func (m *Manager) present(client *acme.Client, chal *acme.Challenge, domain string) error {
	switch chal.Type {
	case HTTP01:
		ka, err := client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return err
		}
		m.mu.Lock()
		m.http01[chal.Token] = ka
		m.mu.Unlock()
	case TLSALPN01:
		c, err := client.TLSALPN01ChallengeCert(chal.Token, domain)
		if err != nil {
			return err
		}
		name := strings.ToLower(domain)
		m.mu.Lock()
		m.alpn[name] = &c
		hook := m.alpnHook
		m.mu.Unlock()
		if hook != nil {
			hook(name, &c)
		}
	default:
		return fmt.Errorf("unsupported challenge type %q", chal.Type)
	}
	return nil
}

// clearChallenges forgets every pending challenge once an order is done either way.
func (m *Manager) clearChallenges() {
	m.mu.Lock()
	names := slices.Collect(maps.Keys(m.alpn))
	clear(m.http01)
	clear(m.alpn)
	hook := m.alpnHook
	m.mu.Unlock()
	if hook != nil {
		for _, name := range names {
			hook(name, nil)
		}
	}
}

// OnTLSALPN01 registers fn to be told when a TLS-ALPN-01 challenge certificate for name (lower
// case) is pending (cert) and when it is withdrawn (nil). It suits a TLS certificate store that
// serves challenges itself (tlsx.Store.SetChallenge) rather than asking TLSALPN01 at every
// handshake; both work at the same time. fn is called without the Manager's lock held, on
// Run's goroutine, before the CA is told to validate, so the certificate is in place when the
// CA connects.
func (m *Manager) OnTLSALPN01(fn func(name string, cert *tls.Certificate)) {
	m.mu.Lock()
	m.alpnHook = fn
	m.mu.Unlock()
}

// store checks the issued chain and writes it and its key to storage. The key is written first:
// a crash between the two renames leaves a pair that does not match, which loadPair refuses, so
// the next start orders a new certificate instead of serving a broken one.
func (m *Manager) store(der [][]byte, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("the CA returned no certificate")
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	if !m.covers(leaf) {
		return nil, fmt.Errorf("issued certificate names %v, not all of %v", leaf.DNSNames, m.domains)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("issued certificate is not for the key of the CSR")
	}
	pemKey, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(m.keyPath, pemKey, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(m.certPath, encodeChain(der), 0o644); err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: der, PrivateKey: key, Leaf: leaf}, nil
}
