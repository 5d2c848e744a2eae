package tlsx

import (
	"cmp"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/waage/waage/internal/config"
)

// pollInterval is how often a Store looks at its files. One os.Stat per file per second costs
// nothing measurable and serves a renewed certificate within about a second, which is what
// operators of certbot or cert-manager setups expect without sending a signal.
const pollInterval = time.Second

// ACMETLS1Protocol is the ALPN protocol of the ACME tls-alpn-01 challenge (RFC 8737).
const ACMETLS1Protocol = "acme-tls/1"

// defaultCiphers are the TLS 1.2 suites offered unless the configuration lists others: ECDHE key
// exchange (forward secrecy) with an AEAD cipher only. CBC suites (Lucky13-style padding
// oracles) and static RSA key exchange (no forward secrecy) are left out; every client of the
// last ten years speaks one of these.
var defaultCiphers = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Store is the certificate store of one TLS-terminating frontend: the certificates of its
// configuration, kept fresh from disk, plus those added at run time (ACME), selected by SNI.
//
// Selection reads an immutable index through an atomic pointer, so handshakes never wait for a
// reload; a reload builds a new index and swaps it. Connections already established keep the
// certificate they were served.
type Store struct {
	log        *slog.Logger
	minVersion uint16
	ciphers    []uint16
	clientAuth tls.ClientAuthType
	clientMode string // client_auth as configured: none | optional | require
	// ca is the client-certificate policy in force: the client_ca pool, reloaded when its file
	// changes, and the ticket binding that goes with it.
	ca atomic.Pointer[caState]

	idx atomic.Pointer[index]

	mu         sync.Mutex // guards what the index is built from
	files      []*certFile
	caPath     string      // client_ca; "" without client_auth
	caSeen     os.FileInfo // what the watcher last saw of it
	dynamic    map[string]*entry
	dynSeq     int
	challenges map[string]*tls.Certificate

	stop      chan struct{}
	closeOnce sync.Once
	// watched is closed when the watcher ends (at once when there are no files), so tests can
	// see it end without holding the Store.
	watched chan struct{}
}

// caState is one version of the client-certificate policy.
type caState struct {
	pool *x509.CertPool // nil without client_auth
	// binding is authenticated (not encrypted) with every session ticket, so a ticket only
	// resumes under the client-certificate policy that issued it: after a reload that tightens
	// client_auth or changes client_ca (in the config or on disk), old tickets give a full
	// handshake instead of letting a client skip the new verification.
	binding []byte
}

// newCAState builds the policy of client_auth mode with the CA bundle pem (ignored for "none").
func newCAState(mode string, pem []byte) (*caState, error) {
	h := sha256.New()
	h.Write([]byte("waage session ticket v1\x00"))
	h.Write([]byte(mode))
	st := &caState{}
	if mode == "optional" || mode == "require" {
		st.pool = x509.NewCertPool()
		if !st.pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("no PEM certificates")
		}
		h.Write([]byte{0})
		h.Write(pem)
	}
	st.binding = h.Sum(nil)
	return st, nil
}

// certFile is one configured cert/key pair and what the watcher last saw of it.
type certFile struct {
	certPath, keyPath string
	certSeen, keySeen os.FileInfo // nil: missing
	cur               *entry
}

// entry is one servable certificate and the names it answers for.
type entry struct {
	cert   *tls.Certificate
	names  []string // lower case; "*.example.com" for wildcards
	rsa    bool
	order  int // configuration order; dynamic certificates after the files, in the order added
	source string
}

// index is an immutable snapshot of the selection tables.
type index struct {
	exact      map[string][]*entry // best first
	wildcard   map[string][]*entry // by "*.example.com", best first
	def        []*entry            // the default certificate and its twins of other key types
	challenges map[string]*tls.Certificate
}

// New loads cfg's certificates and watches their files. Every pair that fails to load is
// reported, each naming its files.
func New(cfg *config.FrontendTLS, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{
		log:        log,
		minVersion: tls.VersionTLS12,
		ciphers:    defaultCiphers,
		dynamic:    map[string]*entry{},
		challenges: map[string]*tls.Certificate{},
		stop:       make(chan struct{}),
		watched:    make(chan struct{}),
	}
	if cfg.MinVersion == "1.3" {
		s.minVersion = tls.VersionTLS13
	}
	var errs []error
	if len(cfg.Ciphers) > 0 {
		s.ciphers = nil
		for _, name := range cfg.Ciphers {
			id, ok := config.CipherSuite(name)
			if !ok {
				errs = append(errs, fmt.Errorf("ciphers: unknown or insecure cipher suite %q", name))
				continue
			}
			s.ciphers = append(s.ciphers, id)
		}
	}
	var pem []byte
	switch cfg.ClientAuth {
	case "optional", "require":
		s.clientAuth = tls.VerifyClientCertIfGiven
		if cfg.ClientAuth == "require" {
			s.clientAuth = tls.RequireAndVerifyClientCert
		}
		s.caPath, s.caSeen = cfg.ClientCA, stat(cfg.ClientCA)
		var err error
		if pem, err = os.ReadFile(cfg.ClientCA); err != nil {
			errs = append(errs, fmt.Errorf("client_ca: %w", err))
		}
	}
	if ca, err := newCAState(cfg.ClientAuth, pem); err != nil {
		if pem != nil {
			errs = append(errs, fmt.Errorf("client_ca: %w in %s", err, cfg.ClientCA))
		}
	} else {
		s.ca.Store(ca)
	}
	s.clientMode = cfg.ClientAuth

	for i, c := range cfg.Certificates {
		f := &certFile{certPath: c.Cert, keyPath: c.Key}
		f.certSeen, f.keySeen = stat(c.Cert), stat(c.Key)
		e, err := loadPair(c.Cert, c.Key, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("certificates[%d]: %w", i, err))
			continue
		}
		f.cur = e
		s.files = append(s.files, f)
		log.Debug("certificate loaded", "cert", c.Cert, "names", e.names, "not_after", e.cert.Leaf.NotAfter)
		s.warnExpiry(e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.rebuild()
	if len(s.files) > 0 || s.caPath != "" {
		go watch(weak.Make(s), s.stop, s.watched)
	} else {
		close(s.watched)
	}
	return s, nil
}

// Close stops watching the files. Handshakes keep working with the certificates loaded last.
//
// A Store that is dropped without Close stops being watched once it is garbage collected (its
// watcher holds it only weakly), so a configuration that was built and thrown away, as by a
// validation, leaks nothing for long; Close just ends the watcher at once.
func (s *Store) Close() {
	s.closeOnce.Do(func() { close(s.stop) })
}

// watch polls a Store's files until it is closed or collected.
func watch(ws weak.Pointer[Store], stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if !pollOnce(ws) {
			return
		}
	}
}

// pollOnce holds the Store strongly only for one poll, so the watcher does not keep it alive.
func pollOnce(ws weak.Pointer[Store]) bool {
	s := ws.Value()
	if s == nil {
		return false
	}
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("certificate watcher panic", "panic", v)
		}
	}()
	s.poll()
	return true
}

// poll reloads every pair whose files changed since they were last looked at. A pair that fails
// to load keeps serving its previous certificate; the failure is logged once, because the
// failed attempt's file state is remembered and the pair is only tried again when it changes
// again (as when the second half of a cert/key swap lands).
func (s *Store) poll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for _, f := range s.files {
		cs, ks := stat(f.certPath), stat(f.keyPath)
		if sameFile(cs, f.certSeen) && sameFile(ks, f.keySeen) {
			continue
		}
		f.certSeen, f.keySeen = cs, ks
		e, err := loadPair(f.certPath, f.keyPath, f.cur.order)
		if err != nil {
			s.log.Warn("certificate not reloaded, still serving the previous one", "cert", f.certPath, "key", f.keyPath, "err", err)
			continue
		}
		f.cur, changed = e, true
		s.log.Info("certificate reloaded", "cert", f.certPath, "names", e.names, "not_after", e.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		s.warnExpiry(e)
	}
	if changed {
		s.rebuild()
	}
	s.pollCA()
}

// pollCA reloads the client_ca bundle when its file changed. A bundle that fails to load keeps
// the previous one in force, logged once per change, as for certificates. Handshakes after the
// swap verify against the new bundle; sessions issued under the old one no longer resume.
func (s *Store) pollCA() {
	if s.caPath == "" {
		return
	}
	st := stat(s.caPath)
	if sameFile(st, s.caSeen) {
		return
	}
	s.caSeen = st
	pem, err := os.ReadFile(s.caPath)
	var ca *caState
	if err == nil {
		ca, err = newCAState(s.clientMode, pem)
	}
	if err != nil {
		s.log.Warn("client CA bundle not reloaded, still verifying with the previous one", "client_ca", s.caPath, "err", err)
		return
	}
	s.ca.Store(ca)
	s.log.Info("client CA bundle reloaded", "client_ca", s.caPath)
}

func (s *Store) warnExpiry(e *entry) {
	if time.Now().After(e.cert.Leaf.NotAfter) {
		s.log.Warn("certificate has expired", "source", e.source, "names", e.names, "not_after", e.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}

// stat returns a file's state, nil when it cannot be read (missing in the middle of a swap).
func stat(path string) os.FileInfo {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return fi
}

// sameFile reports whether a file looks unchanged: same inode (an atomic rename or a
// Kubernetes secret's symlink swap changes it), modification time and size.
func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// loadPair reads a cert/key pair; the error names both files, since crypto/tls's messages ("private
// key does not match public key") do not.
func loadPair(certPath, keyPath string, order int) (*entry, error) {
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("cert %s, key %s: %w", certPath, keyPath, err)
	}
	e, err := newEntry(&c, order, certPath)
	if err != nil {
		return nil, fmt.Errorf("cert %s: %w", certPath, err)
	}
	return e, nil
}

// newEntry indexes a certificate by the names it carries: its DNS SANs, or its subject CN when it
// has none (as browsers and crypto/x509 do, the CN is ignored once SANs exist).
func newEntry(c *tls.Certificate, order int, source string) (*entry, error) {
	if len(c.Certificate) == 0 {
		return nil, errors.New("no certificate in the chain")
	}
	if c.Leaf == nil {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("parsing the certificate: %w", err)
		}
		c.Leaf = leaf
	}
	e := &entry{cert: c, order: order, source: source}
	// The public key tells the type even when the private key is an opaque crypto.Signer.
	_, e.rsa = c.Leaf.PublicKey.(*rsa.PublicKey)
	names := c.Leaf.DNSNames
	if len(names) == 0 && c.Leaf.Subject.CommonName != "" {
		names = []string{c.Leaf.Subject.CommonName}
	}
	for _, n := range names {
		n = normalize(n)
		if n != "" && !slices.Contains(e.names, n) {
			e.names = append(e.names, n)
		}
	}
	return e, nil
}

// normalize makes a name comparable: lower case, without the root's trailing dot.
func normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// rebuild makes a new index from the files, dynamic certificates and challenges; s.mu held.
func (s *Store) rebuild() {
	var all []*entry
	for _, f := range s.files {
		all = append(all, f.cur)
	}
	for _, e := range s.dynamic {
		all = append(all, e)
	}
	// Best first: non-RSA (ECDSA, Ed25519) before RSA, since a client that can verify them gets
	// smaller keys and faster handshakes; then configuration order. pick still checks each client's
	// support, so RSA-only clients get the RSA twin.
	slices.SortStableFunc(all, func(a, b *entry) int {
		if a.rsa != b.rsa {
			if a.rsa {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.order, b.order)
	})
	ix := &index{exact: map[string][]*entry{}, wildcard: map[string][]*entry{}, challenges: map[string]*tls.Certificate{}}
	var first *entry
	for _, e := range all {
		if first == nil || e.order < first.order {
			first = e
		}
		for _, n := range e.names {
			switch {
			case strings.HasPrefix(n, "*.") && !strings.Contains(n[2:], "*"):
				ix.wildcard[n] = append(ix.wildcard[n], e)
			case !strings.Contains(n, "*"):
				ix.exact[n] = append(ix.exact[n], e)
			}
		}
	}
	// The default is the first certificate listed, together with any certificate carrying exactly
	// its names (its ECDSA or RSA twin), so a client without SNI still gets the key type it
	// supports.
	for _, e := range all {
		if first != nil && slices.Equal(e.names, first.names) {
			ix.def = append(ix.def, e)
		}
	}
	for n, c := range s.challenges {
		ix.challenges[n] = c
	}
	s.idx.Store(ix)
}

// getCertificate is tls.Config.GetCertificate: the exact name first, then a wildcard covering
// exactly one more label, then the default.
func (s *Store) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ix := s.idx.Load()
	name := normalize(hello.ServerName)
	if name != "" {
		if c := pick(ix.exact[name], hello); c != nil {
			return c, nil
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c := pick(ix.wildcard["*"+name[i:]], hello); c != nil {
				return c, nil
			}
		}
	}
	if c := pick(ix.def, hello); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no certificate for %q yet", hello.ServerName)
}

// pick returns the first candidate the client can use (they are sorted best first), or the first
// one when it can use none, so that the client, not waage, reports why.
func pick(cands []*entry, hello *tls.ClientHelloInfo) *tls.Certificate {
	if len(cands) == 0 {
		return nil
	}
	if len(cands) > 1 {
		// The name has already matched; SupportsCertificate would check it again with x509's
		// rules, which ignore a CN-only certificate's name, so it checks algorithms only.
		h := *hello
		h.ServerName = ""
		for _, e := range cands {
			if h.SupportsCertificate(e.cert) == nil {
				return e.cert
			}
		}
	}
	return cands[0].cert
}

// SetDynamic adds, replaces (same key) or, with a nil cert, removes a certificate obtained at run
// time, such as by ACME. It is selected by SNI like the files' certificates, which win over it
// for the same name and key type. The default certificate stays the first file certificate; a
// store with no files uses the first dynamic certificate added.
func (s *Store) SetDynamic(key string, cert *tls.Certificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cert == nil {
		delete(s.dynamic, key)
		s.rebuild()
		return nil
	}
	order := 1 << 30
	if old := s.dynamic[key]; old != nil {
		order = old.order // a renewal keeps its place, and so stays the default if it was
	} else {
		s.dynSeq++
		order += s.dynSeq
	}
	e, err := newEntry(cert, order, "dynamic "+key)
	if err != nil {
		return fmt.Errorf("certificate %q: %w", key, err)
	}
	s.dynamic[key] = e
	s.rebuild()
	s.log.Info("certificate added", "key", key, "names", e.names, "not_after", e.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// SetChallenge serves cert, with ALPN acme-tls/1, to a client that asks for name with only that
// protocol (the ACME tls-alpn-01 challenge, RFC 8737); a nil cert removes it.
func (s *Store) SetChallenge(name string, cert *tls.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = normalize(name)
	if cert == nil {
		delete(s.challenges, name)
	} else {
		s.challenges[name] = cert
	}
	s.rebuild()
}

// ServerConfig returns a tls.Config serving the store's certificates, offering nextProtos by ALPN.
// A client that offers ALPN but none of nextProtos still completes the handshake, without ALPN,
// rather than getting crypto/tls's "no application protocol" alert: for a tcp frontend that
// client goes to the default backend, as in passthrough mode.
func (s *Store) ServerConfig(nextProtos []string) *tls.Config {
	// build makes the configs for one client-CA state: cfg, and plain for clients that offer
	// ALPN but none of nextProtos. A reloaded client_ca gets its own pair, built at the first
	// handshake after the swap and kept until the next one.
	type configs struct {
		ca         *caState
		cfg, plain *tls.Config
	}
	build := func(ca *caState) *configs {
		binding := ca.binding
		cfg := &tls.Config{
			MinVersion:     s.minVersion,
			CipherSuites:   s.ciphers,
			ClientAuth:     s.clientAuth,
			ClientCAs:      ca.pool,
			GetCertificate: s.getCertificate,
			WrapSession: func(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
				return tickets.wrapSession(ss, binding)
			},
			UnwrapSession: func(ticket []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
				return tickets.unwrapSession(ticket, binding)
			},
			NextProtos: slices.Clone(nextProtos),
		}
		plain := cfg.Clone()
		plain.NextProtos = nil
		return &configs{ca: ca, cfg: cfg, plain: plain}
	}
	first := build(s.ca.Load())
	var cur atomic.Pointer[configs]
	cur.Store(first)
	challenge := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{ACMETLS1Protocol},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.idx.Load().challenges[normalize(hello.ServerName)]; c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("no acme-tls/1 challenge for %q", hello.ServerName)
		},
	}
	first.cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := cur.Load()
		if ca := s.ca.Load(); c.ca != ca {
			c = build(ca)
			cur.Store(c)
		}
		chosen := c.cfg
		if slices.Equal(hello.SupportedProtos, []string{ACMETLS1Protocol}) &&
			s.idx.Load().challenges[normalize(hello.ServerName)] != nil {
			return challenge, nil
		}
		if len(hello.SupportedProtos) > 0 && len(nextProtos) > 0 &&
			!slices.ContainsFunc(hello.SupportedProtos, func(p string) bool { return slices.Contains(nextProtos, p) }) {
			chosen = c.plain
		}
		if chosen == first.cfg {
			return nil, nil // the config this callback belongs to
		}
		return chosen, nil
	}
	return first.cfg
}

// ClientSubject returns the subject of the verified client certificate (crypto/x509
// Name.String(), RFC 2253 form), "" when none was verified. Only a verified chain counts: with
// client_auth none a client may still send a certificate, and its subject proves nothing.
func ClientSubject(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].Subject.String()
}
