package acme

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/waage/waage/internal/acme/acmetest"
	"github.com/waage/waage/internal/config"
)

// newManager makes a Manager for pebble p with storage in dir.
func newManager(t *testing.T, p *acmetest.Pebble, dir string, challenges []string, domains ...string) (*Manager, *acmetest.SyncBuffer) {
	t.Helper()
	log, buf := testLogger(t)
	m, err := New(&config.ACME{
		Directory:  p.Directory,
		Email:      "ops@example.test",
		Domains:    domains,
		Storage:    dir,
		CA:         p.CAFile,
		Challenges: challenges,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	return m, buf
}

// TestObtainHTTP01 orders a certificate for two names from pebble, which validates each with a
// real HTTP-01 request to the test's server; the result verifies against pebble's root and is
// stored with private files.
func TestObtainHTTP01(t *testing.T) {
	s := serveChallenges(t, true, false)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: s.httpPort, TLSPort: s.tlsPort})
	dir := t.TempDir()
	m, logs := newManager(t, p, dir, []string{HTTP01}, "a.example.test", "B.example.test")
	s.use(m)
	start := time.Now()
	r := startRun(t, m)
	c := r.next(t, time.Minute)
	t.Logf("issuance with http-01 for 2 names took %v", time.Since(start))
	verifyCert(t, c, p.Roots, "a.example.test", "b.example.test")
	if got := s.httpHits.Load(); got < 2 {
		t.Errorf("HTTP-01 server answered %d challenges, want one per name (2)", got)
	}
	if got := s.alpnHits.Load(); got != 0 {
		t.Errorf("TLS-ALPN-01 used %d times, want 0 (not configured)", got)
	}
	if l := logs.String(); !strings.Contains(l, `msg="acme: certificate obtained"`) || !strings.Contains(l, "challenge=http-01") {
		t.Errorf("no 'certificate obtained' log with challenge=http-01:\n%s", l)
	}
	if m.AccountURI() == "" {
		t.Error("no account URI after issuance")
	}
	// The pending challenges are gone once the order is done.
	if len(m.http01) != 0 {
		t.Errorf("pending HTTP-01 tokens left after issuance: %v", m.http01)
	}

	// Storage: account key and certificate key private, the chain beside it, no temp files.
	caSub := filepath.Join(dir, caDir(p.Directory))
	for path, mode := range map[string]os.FileMode{
		filepath.Join(caSub, "account.key"):                        0o600,
		filepath.Join(caSub, "certificates", "a.example.test.key"): 0o600,
		filepath.Join(caSub, "certificates", "a.example.test.crt"): 0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	stored, err := loadPair(m.certPath, m.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored.Certificate[0], c.Certificate[0]) || len(stored.Certificate) != len(c.Certificate) || len(c.Certificate) < 2 {
		t.Errorf("stored chain (%d certs) is not the delivered chain (%d certs, leaf + intermediates)", len(stored.Certificate), len(c.Certificate))
	}
	tmp, _ := filepath.Glob(filepath.Join(caSub, "*", ".*tmp*"))
	if len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// TestObtainTLSALPN01 orders a certificate validated with TLS-ALPN-01: pebble connects to the
// test's TLS listener offering acme-tls/1, and the listener's GetConfigForClient answers with
// the Manager's challenge certificate.
func TestObtainTLSALPN01(t *testing.T) {
	s := serveChallenges(t, false, true)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: s.httpPort, TLSPort: s.tlsPort})
	m, logs := newManager(t, p, t.TempDir(), []string{TLSALPN01}, "alpn.example.test")
	s.use(m)
	start := time.Now()
	r := startRun(t, m)
	c := r.next(t, time.Minute)
	t.Logf("issuance with tls-alpn-01 took %v", time.Since(start))
	verifyCert(t, c, p.Roots, "alpn.example.test")
	if got := s.alpnHits.Load(); got < 1 {
		t.Errorf("TLS-ALPN-01 handshakes answered: %d, want at least 1", got)
	}
	if l := logs.String(); !strings.Contains(l, "challenge=tls-alpn-01") {
		t.Errorf("no log of the tls-alpn-01 challenge:\n%s", l)
	}
}

// TestTLSALPN01OnlyForChallenges: the challenge certificate is handed out only for a pending
// domain and only to a ClientHello offering acme-tls/1, so ordinary clients never see it.
func TestTLSALPN01OnlyForChallenges(t *testing.T) {
	m := &Manager{alpn: map[string]*tls.Certificate{"a.example.test": {}}}
	tests := []struct {
		name  string
		hello *tls.ClientHelloInfo
		want  bool
	}{
		{"challenge", &tls.ClientHelloInfo{ServerName: "a.example.test", SupportedProtos: []string{ALPNProto}}, true},
		{"upper case, trailing dot", &tls.ClientHelloInfo{ServerName: "A.Example.Test.", SupportedProtos: []string{ALPNProto}}, true},
		{"ordinary client", &tls.ClientHelloInfo{ServerName: "a.example.test", SupportedProtos: []string{"h2", "http/1.1"}}, false},
		{"other name", &tls.ClientHelloInfo{ServerName: "b.example.test", SupportedProtos: []string{ALPNProto}}, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.TLSALPN01(tt.hello) != nil; got != tt.want {
				t.Errorf("TLSALPN01 = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRestartReusesStorage: a second Manager on the same storage uses the same account for a
// new order, and a third one serves the stored certificate with the CA stopped, so it ordered
// nothing.
func TestRestartReusesStorage(t *testing.T) {
	s := serveChallenges(t, true, false)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: s.httpPort, TLSPort: s.tlsPort})
	dir := t.TempDir()

	m1, _ := newManager(t, p, dir, []string{HTTP01}, "r.example.test")
	s.use(m1)
	r1 := startRun(t, m1)
	c1 := r1.next(t, time.Minute)
	r1.stop()
	keyBefore, err := os.ReadFile(m1.accountPath)
	if err != nil {
		t.Fatal(err)
	}

	// A domain added: the stored certificate does not cover it, so a new one is ordered, with
	// the stored account.
	m2, logs2 := newManager(t, p, dir, []string{HTTP01}, "r.example.test", "s.example.test")
	s.use(m2)
	r2 := startRun(t, m2)
	c2 := r2.next(t, time.Minute)
	r2.stop()
	verifyCert(t, c2, p.Roots, "r.example.test", "s.example.test")
	if bytes.Equal(c1.Certificate[0], c2.Certificate[0]) {
		t.Fatal("the stored certificate was reused although it lacks s.example.test")
	}
	if m2.AccountURI() != m1.AccountURI() {
		t.Errorf("account after restart = %q, want the stored one %q", m2.AccountURI(), m1.AccountURI())
	}
	if strings.Contains(logs2.String(), "account registered") || strings.Contains(logs2.String(), "created account key") {
		t.Errorf("a new account was made on restart:\n%s", logs2.String())
	}
	keyAfter, _ := os.ReadFile(m1.accountPath)
	if !bytes.Equal(keyBefore, keyAfter) {
		t.Error("the account key file changed")
	}

	// With the CA gone, a restart must still deliver the stored certificate at once.
	p.Stop()
	m3, logs3 := newManager(t, p, dir, []string{HTTP01}, "r.example.test", "s.example.test")
	r3 := startRun(t, m3)
	c3 := r3.next(t, 5*time.Second)
	if !bytes.Equal(c3.Certificate[0], c2.Certificate[0]) {
		t.Error("restart delivered another certificate than the stored one")
	}
	if l := logs3.String(); !strings.Contains(l, "using stored certificate") || strings.Contains(l, "certificate obtained") {
		t.Errorf("restart did not just use the stored certificate:\n%s", l)
	}
}

// TestRenewal: pebble issues 12-second certificates; with the default renew_before (a third of
// the lifetime) the Manager orders a second certificate about 8 s after the first and delivers
// it through onCert, and stores it.
func TestRenewal(t *testing.T) {
	s := serveChallenges(t, true, false)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: s.httpPort, TLSPort: s.tlsPort, Validity: 12})
	m, _ := newManager(t, p, t.TempDir(), []string{HTTP01}, "renew.example.test")
	s.use(m)
	r := startRun(t, m)
	c1 := r.next(t, time.Minute)
	due := m.renewAt(c1.Leaf)
	if life := c1.Leaf.NotAfter.Sub(c1.Leaf.NotBefore); life > time.Minute {
		t.Fatalf("pebble ignored certificateValidityPeriod: lifetime %v", life)
	}
	c2 := r.next(t, time.Until(c1.Leaf.NotAfter)+30*time.Second)
	got := time.Now()
	if got.Before(due) {
		t.Errorf("renewed at %v, before it was due at %v", got, due)
	}
	if !got.Before(c1.Leaf.NotAfter) {
		t.Errorf("renewed at %v, after the old certificate expired at %v", got, c1.Leaf.NotAfter)
	}
	if c1.Leaf.SerialNumber.Cmp(c2.Leaf.SerialNumber) == 0 {
		t.Fatal("renewal delivered the same certificate")
	}
	if c1.PrivateKey.(*ecdsa.PrivateKey).Equal(c2.PrivateKey) {
		t.Error("renewal reused the certificate key; each certificate gets a new one")
	}
	verifyCert(t, c2, p.Roots, "renew.example.test")
	stored, err := loadPair(m.certPath, m.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored.Certificate[0], c2.Certificate[0]) {
		t.Error("storage still holds the old certificate after renewal")
	}
}

// TestChallengeFallback: http-01 is preferred but nothing listens on pebble's HTTP port; the
// CA's connection error is logged and the Manager falls back to tls-alpn-01 with a new order.
func TestChallengeFallback(t *testing.T) {
	s := serveChallenges(t, false, true)
	s.pushed = true // this time the TLS listener serves what OnTLSALPN01 pushed
	p := acmetest.Start(t, acmetest.Options{HTTPPort: s.httpPort, TLSPort: s.tlsPort})
	m, logs := newManager(t, p, t.TempDir(), []string{HTTP01, TLSALPN01}, "fallback.example.test")
	s.use(m)
	r := startRun(t, m)
	c := r.next(t, time.Minute)
	verifyCert(t, c, p.Roots, "fallback.example.test")
	l := logs.String()
	failed := lineWith(l, `msg="acme: challenge failed"`)
	if failed == "" || !strings.Contains(failed, "challenge=http-01") || !strings.Contains(failed, "next=tls-alpn-01") {
		t.Errorf("no 'challenge failed' log for http-01 naming the next type:\n%s", l)
	}
	// The CA's problem document: type urn:ietf:params:acme:error:connection and its detail.
	if !strings.Contains(failed, "urn:ietf:params:acme:error:connection") {
		t.Errorf("the failure does not carry the CA's problem type:\n%s", failed)
	}
	if got := lineWith(l, `msg="acme: certificate obtained"`); !strings.Contains(got, "challenge=tls-alpn-01") {
		t.Errorf("certificate not obtained with tls-alpn-01:\n%s", l)
	}
	want := []string{"set fallback.example.test", "clear fallback.example.test"}
	if got := s.pushEvents(); !slices.Equal(got, want) {
		t.Errorf("OnTLSALPN01 events = %q, want %q", got, want)
	}
}

// TestRetryAfterFailure: the only challenge type fails (the server answers 404), the failure is
// logged with the CA's detail, and the Manager tries again after its backoff and succeeds once
// the server answers.
func TestRetryAfterFailure(t *testing.T) {
	s := serveChallenges(t, true, false)
	s.httpAllow.Store(false)
	p := acmetest.Start(t, acmetest.Options{HTTPPort: s.httpPort, TLSPort: s.tlsPort})
	m, logs := newManager(t, p, t.TempDir(), []string{HTTP01}, "retry.example.test")
	m.retryMin = 500 * time.Millisecond
	s.use(m)
	r := startRun(t, m)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "acme: obtaining certificate failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no failure logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.httpAllow.Store(true)
	c := r.next(t, time.Minute)
	verifyCert(t, c, p.Roots, "retry.example.test")
	failed := lineWith(logs.String(), `msg="acme: obtaining certificate failed"`)
	if !strings.Contains(failed, "urn:ietf:params:acme:error:unauthorized") || !strings.Contains(failed, "404") {
		t.Errorf("the failure does not carry the CA's problem (unauthorized, 404):\n%s", failed)
	}
}

func lineWith(logs, s string) string {
	for l := range strings.Lines(logs) {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestRenewAt pins the renewal moment: renew_before ahead of expiry, a third of the lifetime by
// default or when renew_before is not shorter than the lifetime (which would renew in a loop).
func TestRenewAt(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(90 * 24 * time.Hour)}
	tests := []struct {
		name        string
		renewBefore time.Duration
		want        time.Time
	}{
		{"default third", 0, nb.Add(60 * 24 * time.Hour)},
		{"negative is the default", -time.Hour, nb.Add(60 * 24 * time.Hour)},
		{"explicit", 7 * 24 * time.Hour, nb.Add(83 * 24 * time.Hour)},
		{"longer than lifetime", 100 * 24 * time.Hour, nb.Add(60 * 24 * time.Hour)},
		{"equal to lifetime", 90 * 24 * time.Hour, nb.Add(60 * 24 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := testLogger(t)
			m := &Manager{cfg: config.ACME{RenewBefore: config.Duration(tt.renewBefore)}, log: log}
			for range 2 {
				if got := m.renewAt(leaf); !got.Equal(tt.want) {
					t.Errorf("renewAt = %v, want %v", got, tt.want)
				}
			}
			// A renew_before that cannot work is reported, once.
			warned := strings.Count(logs.String(), "renew_before is not shorter")
			if want := map[bool]int{true: 1, false: 0}[tt.renewBefore >= 90*24*time.Hour]; warned != want {
				t.Errorf("warnings = %d, want %d:\n%s", warned, want, logs.String())
			}
		})
	}
}

// TestStorageFiles: atomic writes leave the final mode and no temporary file; a key and chain
// that do not match are refused rather than served.
func TestStorageFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.key")
	k1, created, err := loadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("loadOrCreateKey: created=%v err=%v", created, err)
	}
	k2, created, err := loadOrCreateKey(path)
	if err != nil || created {
		t.Fatalf("second loadOrCreateKey: created=%v err=%v", created, err)
	}
	if !k1.(*ecdsa.PrivateKey).Equal(k2) {
		t.Error("the stored key was not reused")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	if err := writeFileAtomic(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files after atomic writes: %v, want only k.key", entries)
	}
	if err := writeFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("write into a missing directory: err = %v, want one naming the path", err)
	}

	// A chain whose key is another one (a crash between the two renames).
	tmp := t.TempDir()
	_, certFile, _ := acmetest.WriteServerCert(t, tmp)
	if _, err := loadPair(certFile, path); err == nil {
		t.Error("loadPair accepted a key that is not the certificate's")
	}
	if got := caDir("https://acme-staging-v02.api.letsencrypt.org/directory"); got != "acme-staging-v02.api.letsencrypt.org_directory" {
		t.Errorf("caDir = %q", got)
	}
	if got := caDir("https://127.0.0.1:14000/dir"); !slices.Contains([]string{"127.0.0.1_14000_dir"}, got) {
		t.Errorf("caDir = %q", got)
	}
}

// TestRateLimited: a rateLimited problem wrapped in the errors of an attempt still yields the
// CA's Retry-After, which Run waits out instead of its shorter backoff.
func TestRateLimited(t *testing.T) {
	prob := &acme.Error{StatusCode: 429, ProblemType: "urn:ietf:params:acme:error:rateLimited",
		Header: http.Header{"Retry-After": []string{"3600"}}}
	err := errors.Join(fmt.Errorf("new order: %w", prob), errors.New("other"))
	if d, ok := rateLimited(err); !ok || d != time.Hour {
		t.Errorf("rateLimited = %v, %v; want 1h, true", d, ok)
	}
	other := fmt.Errorf("x: %w", &acme.Error{StatusCode: 403, ProblemType: "urn:ietf:params:acme:error:unauthorized"})
	if _, ok := rateLimited(other); ok {
		t.Error("an unauthorized problem counted as a rate limit")
	}
}

// TestNewRejects: configuration New cannot work with is refused with the key named, before any
// goroutine or CA request.
func TestNewRejects(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := config.ACME{Directory: "https://127.0.0.1:14000/dir", Domains: []string{"a.example.test"}, Storage: dir}
	tests := []struct {
		name   string
		change func(*config.ACME)
		want   string
	}{
		{"relative storage", func(a *config.ACME) { a.Storage = "acme" }, "storage"},
		{"no domains", func(a *config.ACME) { a.Domains = nil }, "domains"},
		{"no directory", func(a *config.ACME) { a.Directory = "" }, "directory"},
		{"missing ca file", func(a *config.ACME) { a.CA = filepath.Join(dir, "nope.pem") }, "nope.pem"},
		{"ca without PEM", func(a *config.ACME) { a.CA = notPEM }, "no PEM certificate"},
		{"unknown challenge", func(a *config.ACME) { a.Challenges = []string{"dns-01"} }, "dns-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := ok
			tt.change(&a)
			if _, err := New(&a, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := New(&ok, nil); err != nil {
		t.Errorf("New with a good config: %v", err)
	}
}
