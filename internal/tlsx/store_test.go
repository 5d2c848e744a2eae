package tlsx

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSNISelection(t *testing.T) {
	ca := newCA(t, "sni CA")
	dir := t.TempDir()
	cfg := &config.FrontendTLS{Certificates: []config.Certificate{
		ca.writePair(t, dir, "default", leafSpec{label: "default", names: []string{"www.example.net"}}),
		ca.writePair(t, dir, "exact", leafSpec{label: "exact", names: []string{"a.example.com", "API.Example.org"}}),
		ca.writePair(t, dir, "wild", leafSpec{label: "wild", names: []string{"*.example.com"}}),
		ca.writePair(t, dir, "deep", leafSpec{label: "deep", names: []string{"*.b.example.com"}}),
		// No SANs: the common name is the name.
		ca.writePair(t, dir, "cn", leafSpec{label: "cn", cn: "legacy.example.com"}),
		// Both: the common name is ignored.
		ca.writePair(t, dir, "both", leafSpec{label: "both", cn: "ignored.example.info", names: []string{"both.example.com"}}),
	}}
	s := newStore(t, cfg, nil)
	addr := serve(t, s.ServerConfig(nil))

	tests := []struct {
		name, sni, want string
	}{
		{name: "exact name", sni: "a.example.com", want: "exact"},
		{name: "exact name beats the wildcard", sni: "a.example.com", want: "exact"},
		{name: "second SAN, case-insensitive", sni: "api.EXAMPLE.org", want: "exact"},
		{name: "wildcard covers one label", sni: "x.example.com", want: "wild"},
		{name: "wildcard, upper case SNI", sni: "X.Example.COM", want: "wild"},
		{name: "more specific wildcard", sni: "c.b.example.com", want: "deep"},
		{name: "wildcard does not cover two labels", sni: "y.x.example.com", want: "default"},
		{name: "wildcard does not cover the bare domain", sni: "example.com", want: "default"},
		{name: "common name without SANs", sni: "legacy.example.com", want: "cn"},
		{name: "common name ignored beside SANs", sni: "ignored.example.info", want: "default"},
		{name: "SAN beside a common name", sni: "both.example.com", want: "both"},
		{name: "unknown name gets the default", sni: "unknown.test", want: "default"},
		{name: "default by its own name", sni: "www.example.net", want: "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Skip verification: the default certificate does not match the unknown names, and
			// the point is which certificate came, not whether it fits.
			got := served(t, addr, &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true})
			if got != tt.want {
				t.Errorf("SNI %q: served %q, want %q", tt.sni, got, tt.want)
			}
		})
	}
	t.Run("verified by a real client", func(t *testing.T) {
		if got := served(t, addr, clientFor(ca, "z.example.com")); got != "wild" {
			t.Errorf("served %q, want wild", got)
		}
	})
	t.Run("no SNI gets the default", func(t *testing.T) {
		// An IP address as ServerName makes crypto/tls send no SNI at all.
		got := served(t, addr, &tls.Config{ServerName: "127.0.0.1", InsecureSkipVerify: true})
		if got != "default" {
			t.Errorf("served %q, want default", got)
		}
	})
}

func TestECDSAPreferred(t *testing.T) {
	ca := newCA(t, "ecdsa CA")
	dir := t.TempDir()
	// RSA listed first for both names: the ECDSA twin must still win with modern clients.
	cfg := &config.FrontendTLS{Certificates: []config.Certificate{
		ca.writePair(t, dir, "rsa", leafSpec{label: "rsa", names: []string{"a.example.com"}, rsa: true}),
		ca.writePair(t, dir, "ecdsa", leafSpec{label: "ecdsa", names: []string{"a.example.com"}}),
		ca.writePair(t, dir, "wrsa", leafSpec{label: "wild-rsa", names: []string{"*.example.org"}, rsa: true}),
		ca.writePair(t, dir, "wecdsa", leafSpec{label: "wild-ecdsa", names: []string{"*.example.org"}}),
	}}
	s := newStore(t, cfg, nil)
	addr := serve(t, s.ServerConfig(nil))
	rsaOnly := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	tests := []struct {
		name, sni string
		rsaOnly   bool
		want      string
	}{
		{name: "exact, modern client", sni: "a.example.com", want: "ecdsa"},
		{name: "exact, RSA-only client", sni: "a.example.com", rsaOnly: true, want: "rsa"},
		{name: "wildcard, modern client", sni: "b.example.org", want: "wild-ecdsa"},
		{name: "wildcard, RSA-only client", sni: "b.example.org", rsaOnly: true, want: "wild-rsa"},
		{name: "no SNI, modern client", sni: "", want: "ecdsa"},
		{name: "no SNI, RSA-only client", sni: "", rsaOnly: true, want: "rsa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true}
			if tt.sni == "" {
				c.ServerName = "127.0.0.1"
			}
			if tt.rsaOnly {
				// A TLS 1.2 client with only ECDHE_RSA suites cannot use an ECDSA certificate.
				c.MaxVersion, c.CipherSuites = tls.VersionTLS12, rsaOnly
			}
			if got := served(t, addr, c); got != tt.want {
				t.Errorf("served %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReloadOnChange(t *testing.T) {
	ca := newCA(t, "reload CA")
	dir := t.TempDir()
	pair := ca.writePair(t, dir, "site", leafSpec{label: "v1", names: []string{"a.example.com"}})
	var logs logBuffer
	s := newStore(t, &config.FrontendTLS{Certificates: []config.Certificate{pair}}, testLogger(&logs))
	addr := serve(t, s.ServerConfig(nil))
	client := clientFor(ca, "a.example.com")

	old, err := dial(addr, client)
	if err != nil {
		t.Fatal(err)
	}
	defer old.conn.Close()
	if old.label() != "v1" {
		t.Fatalf("served %q, want v1", old.label())
	}

	// Renewal as certbot does it: new files renamed over the old ones.
	ca.writePair(t, dir, "site", leafSpec{label: "v2", names: []string{"a.example.com", "b.example.com"}})
	start := time.Now()
	waitFor(t, 3*time.Second, "the renewed certificate is not served", func() bool {
		return served(t, addr, client) == "v2"
	})
	t.Logf("renewed certificate served after %v", time.Since(start).Round(10*time.Millisecond))
	if got := served(t, addr, clientFor(ca, "b.example.com")); got != "v2" {
		t.Errorf("new name b.example.com: served %q, want v2", got)
	}
	if err := old.echo("still there"); err != nil {
		t.Errorf("connection opened before the reload: %v", err)
	}
	if old.label() != "v1" {
		t.Errorf("connection opened before the reload now reports %q", old.label())
	}
	waitFor(t, time.Second, "reload not logged", func() bool {
		l := logs.String()
		return strings.Contains(l, "certificate reloaded") && strings.Contains(l, "b.example.com") && strings.Contains(l, "not_after=")
	})
}

func TestBrokenReplacementKeepsOldCert(t *testing.T) {
	ca := newCA(t, "broken CA")
	dir := t.TempDir()
	pair := ca.writePair(t, dir, "site", leafSpec{label: "v1", names: []string{"a.example.com"}})
	var logs logBuffer
	s := newStore(t, &config.FrontendTLS{Certificates: []config.Certificate{pair}}, testLogger(&logs))
	addr := serve(t, s.ServerConfig(nil))
	client := clientFor(ca, "a.example.com")
	const warning = "certificate not reloaded"

	otherCert, _ := ca.issue(t, leafSpec{label: "other", names: []string{"a.example.com"}})
	goodCert, goodKey := ca.issue(t, leafSpec{label: "v2", names: []string{"a.example.com"}})
	steps := []struct {
		name   string
		change func()
		warns  int
	}{
		{name: "garbage PEM", change: func() { writeAtomic(t, pair.Cert, []byte("-----BEGIN CERT")) }, warns: 1},
		{name: "certificate of another key", change: func() { writeAtomic(t, pair.Cert, otherCert) }, warns: 2},
		{name: "key file missing", change: func() { os.Remove(pair.Key) }, warns: 3},
		// Half of a non-atomic swap: the new key next to the old (broken) certificate.
		{name: "new key, certificate not yet", change: func() { writeAtomic(t, pair.Key, goodKey) }, warns: 4},
	}
	for _, st := range steps {
		st.change()
		// Two polls: the broken pair must be seen, warned about once, and not served.
		time.Sleep(2200 * time.Millisecond)
		if got := served(t, addr, client); got != "v1" {
			t.Fatalf("%s: served %q, want the previous v1", st.name, got)
		}
		if n := logs.count(warning); n != st.warns {
			t.Fatalf("%s: %d warnings, want %d (one per change):\n%s", st.name, n, st.warns, logs.String())
		}
	}
	writeAtomic(t, pair.Cert, goodCert)
	waitFor(t, 3*time.Second, "the repaired pair is not served", func() bool { return served(t, addr, client) == "v2" })
	if n := logs.count(warning); n != 4 {
		t.Errorf("%d warnings after the repair, want still 4", n)
	}
}

func TestVersions(t *testing.T) {
	ca := newCA(t, "version CA")
	dir := t.TempDir()
	pair := ca.writePair(t, dir, "site", leafSpec{label: "v", names: []string{"a.example.com"}})
	def := serve(t, newStore(t, &config.FrontendTLS{Certificates: []config.Certificate{pair}}, nil).ServerConfig(nil))
	only13 := serve(t, newStore(t, &config.FrontendTLS{Certificates: []config.Certificate{pair}, MinVersion: "1.3"}, nil).ServerConfig(nil))

	tests := []struct {
		name     string
		addr     string
		min, max uint16
		want     uint16 // 0: refused
	}{
		{name: "default refuses TLS 1.0", addr: def, min: tls.VersionTLS10, max: tls.VersionTLS10},
		{name: "default refuses TLS 1.1", addr: def, min: tls.VersionTLS10, max: tls.VersionTLS11},
		{name: "default accepts TLS 1.2", addr: def, max: tls.VersionTLS12, want: tls.VersionTLS12},
		{name: "default prefers TLS 1.3", addr: def, want: tls.VersionTLS13},
		{name: "1.3 only refuses TLS 1.2", addr: only13, max: tls.VersionTLS12},
		{name: "1.3 only accepts TLS 1.3", addr: only13, want: tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clientFor(ca, "a.example.com")
			c.MinVersion, c.MaxVersion = tt.min, tt.max
			s, err := dial(tt.addr, c)
			if tt.want == 0 {
				if err == nil {
					s.conn.Close()
					t.Fatalf("handshake succeeded with %s", tls.VersionName(s.conn.ConnectionState().Version))
				}
				if !strings.Contains(err.Error(), "protocol version") {
					t.Errorf("refused, but not for the version: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.conn.Close()
			if v := s.conn.ConnectionState().Version; v != tt.want {
				t.Errorf("negotiated %s, want %s", tls.VersionName(v), tls.VersionName(tt.want))
			}
		})
	}
}

func TestCipherSuites(t *testing.T) {
	ca := newCA(t, "cipher CA")
	dir := t.TempDir()
	pair := ca.writePair(t, dir, "site", leafSpec{label: "v", names: []string{"a.example.com"}})
	def := serve(t, newStore(t, &config.FrontendTLS{Certificates: []config.Certificate{pair}}, nil).ServerConfig(nil))
	limited := serve(t, newStore(t, &config.FrontendTLS{Certificates: []config.Certificate{pair},
		Ciphers: []string{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"}}, nil).ServerConfig(nil))

	tests := []struct {
		name   string
		addr   string
		offer  []uint16
		max    uint16
		want   uint16 // 0: refused
		reason string
	}{
		{name: "default refuses CBC", addr: def, max: tls.VersionTLS12, offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}},
		{name: "default takes AES-GCM", addr: def, max: tls.VersionTLS12, offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, want: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{name: "default takes ChaCha20", addr: def, max: tls.VersionTLS12, offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, want: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "listed suite only: AES-GCM refused", addr: limited, max: tls.VersionTLS12, offer: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}},
		{name: "listed suite accepted", addr: limited, max: tls.VersionTLS12, want: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "TLS 1.3 unaffected by the list", addr: limited, want: tls.TLS_AES_128_GCM_SHA256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clientFor(ca, "a.example.com")
			c.MaxVersion, c.CipherSuites = tt.max, tt.offer
			s, err := dial(tt.addr, c)
			if tt.want == 0 {
				if err == nil {
					s.conn.Close()
					t.Fatalf("handshake succeeded with %s", tls.CipherSuiteName(s.conn.ConnectionState().CipherSuite))
				}
				if !strings.Contains(err.Error(), "handshake failure") {
					t.Errorf("refused, but not for the cipher: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.conn.Close()
			// TLS 1.3 picks AES-128-GCM or ChaCha20 by hardware; either is fine there.
			got := s.conn.ConnectionState().CipherSuite
			if got != tt.want && !(tt.max == 0 && got == tls.TLS_CHACHA20_POLY1305_SHA256) {
				t.Errorf("negotiated %s, want %s", tls.CipherSuiteName(got), tls.CipherSuiteName(tt.want))
			}
		})
	}
}

func TestClientAuth(t *testing.T) {
	ca := newCA(t, "server CA")
	clientCA := newCA(t, "client CA")
	strangerCA := newCA(t, "stranger CA")
	dir := t.TempDir()
	pair := ca.writePair(t, dir, "site", leafSpec{label: "v", names: []string{"a.example.com"}})
	caFile := filepath.Join(dir, "clients.pem")
	writeAtomic(t, caFile, clientCA.pem)
	alice := clientCA.tlsCert(t, leafSpec{label: "Example Org", cn: "alice", client: true})
	mallory := strangerCA.tlsCert(t, leafSpec{label: "Example Org", cn: "mallory", client: true})
	const aliceSubject = "CN=alice,O=Example Org"

	addr := map[string]string{}
	for _, mode := range []string{"none", "optional", "require"} {
		c := &config.FrontendTLS{Certificates: []config.Certificate{pair}, ClientAuth: mode}
		if mode != "none" {
			c.ClientCA = caFile
		}
		addr[mode] = serve(t, newStore(t, c, nil).ServerConfig(nil))
	}
	tests := []struct {
		mode        string
		cert        *tls.Certificate
		tls12       bool
		wantSubject string // "": refused
	}{
		{mode: "none", wantSubject: "-"},
		{mode: "none", cert: alice, wantSubject: "-"}, // not asked for, never verified
		{mode: "optional", wantSubject: "-"},
		{mode: "optional", cert: alice, wantSubject: aliceSubject},
		{mode: "optional", cert: alice, tls12: true, wantSubject: aliceSubject},
		{mode: "optional", cert: mallory},
		{mode: "require"},
		{mode: "require", tls12: true},
		{mode: "require", cert: mallory},
		{mode: "require", cert: alice, wantSubject: aliceSubject},
		{mode: "require", cert: alice, tls12: true, wantSubject: aliceSubject},
	}
	for _, tt := range tests {
		name := tt.mode + " without a certificate"
		if tt.cert != nil {
			name = fmt.Sprintf("%s with %s", tt.mode, tt.cert.Leaf.Subject.CommonName)
		}
		if tt.tls12 {
			name += " over TLS 1.2"
		}
		t.Run(name, func(t *testing.T) {
			c := clientFor(ca, "a.example.com")
			if tt.cert != nil {
				// Send the certificate whatever CAs the server names: a Go client given it in
				// Certificates would hold back one from a CA the server does not list.
				cert := tt.cert
				c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
			}
			if tt.tls12 {
				c.MaxVersion = tls.VersionTLS12
			}
			// dial reads the server's first line: with TLS 1.3 a refused client certificate
			// only shows there, after the client's side of the handshake finished.
			s, err := dial(addr[tt.mode], c)
			if tt.wantSubject == "" {
				if err == nil {
					s.conn.Close()
					t.Fatalf("accepted, subject %q", s.subject)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.conn.Close()
			if s.subject != tt.wantSubject {
				t.Errorf("ClientSubject = %q, want %q", s.subject, tt.wantSubject)
			}
		})
	}
}

// TestClientCAReload: a client_ca file replaced on disk is in force for the next handshakes,
// sessions issued under the old bundle do not resume, and a broken replacement keeps the bundle
// that was loaded before.
func TestClientCAReload(t *testing.T) {
	ca := newCA(t, "server CA")
	oldCA, newCAs := newCA(t, "old client CA"), newCA(t, "new client CA")
	dir := t.TempDir()
	pair := ca.writePair(t, dir, "site", leafSpec{label: "v", names: []string{"a.example.com"}})
	caFile := filepath.Join(dir, "clients.pem")
	writeAtomic(t, caFile, oldCA.pem)
	alice := oldCA.tlsCert(t, leafSpec{label: "Example Org", cn: "alice", client: true})
	bob := newCAs.tlsCert(t, leafSpec{label: "Example Org", cn: "bob", client: true})
	var logs logBuffer
	st := newStore(t, &config.FrontendTLS{Certificates: []config.Certificate{pair}, ClientAuth: "require", ClientCA: caFile}, testLogger(&logs))
	addr := serve(t, st.ServerConfig([]string{"h2", "http/1.1"}))
	// Each client keeps its sessions: alice's must not resume once her CA is gone.
	caches := map[*tls.Certificate]tls.ClientSessionCache{alice: tls.NewLRUClientSessionCache(4), bob: tls.NewLRUClientSessionCache(4)}
	try := func(cert *tls.Certificate, alpn ...string) (*session, error) {
		c := clientFor(ca, "a.example.com")
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		c.ClientSessionCache = caches[cert]
		c.NextProtos = alpn
		return dial(addr, c)
	}
	s, err := try(alice)
	if err != nil {
		t.Fatalf("alice before the swap: %v", err)
	}
	s.conn.Close()
	if _, err := try(bob); err == nil {
		t.Fatal("bob accepted before the swap")
	}

	writeAtomic(t, caFile, newCAs.pem)
	waitFor(t, 5*time.Second, "the new client CA in force", func() bool {
		s, err := try(bob)
		if err == nil {
			s.conn.Close()
		}
		return err == nil
	})
	for _, alpn := range [][]string{nil, {"h2"}, {"imap"}} {
		s, err := try(bob, alpn...)
		if err != nil {
			t.Fatalf("bob with ALPN %v after the swap: %v", alpn, err)
		}
		s.conn.Close()
		// alice holds a session ticket from before the swap: it must not let her in.
		if s, err := try(alice, alpn...); err == nil {
			s.conn.Close()
			t.Fatalf("alice with ALPN %v accepted after the swap (resumed: %v)", alpn, s.conn.ConnectionState().DidResume)
		}
	}
	if logs.count("client CA bundle reloaded") != 1 {
		t.Errorf("log:\n%s", logs.String())
	}

	writeAtomic(t, caFile, []byte("not a certificate"))
	waitFor(t, 5*time.Second, "the broken bundle noticed", func() bool { return logs.count("client CA bundle not reloaded") == 1 })
	if s, err := try(bob); err != nil {
		t.Fatalf("bob after a broken replacement: %v", err)
	} else {
		s.conn.Close()
	}
}

func TestClientCAErrors(t *testing.T) {
	ca := newCA(t, "CA")
	dir := t.TempDir()
	pair := ca.writePair(t, dir, "site", leafSpec{label: "v", names: []string{"a.example.com"}})
	notPEM := filepath.Join(dir, "not.pem")
	writeAtomic(t, notPEM, []byte("hello"))
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name, file, want string
	}{
		{name: "missing file", file: missing, want: "client_ca: open " + missing + ": no such file or directory"},
		{name: "no PEM", file: notPEM, want: "client_ca: no PEM certificates in " + notPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(&config.FrontendTLS{Certificates: []config.Certificate{pair}, ClientAuth: "require", ClientCA: tt.file}, nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestNewErrorsNameTheFiles(t *testing.T) {
	ca := newCA(t, "CA")
	dir := t.TempDir()
	good := ca.writePair(t, dir, "good", leafSpec{label: "v", names: []string{"a.example.com"}})
	other := ca.writePair(t, dir, "other", leafSpec{label: "v", names: []string{"a.example.com"}})
	mismatch := config.Certificate{Cert: good.Cert, Key: other.Key}
	missing := config.Certificate{Cert: filepath.Join(dir, "nope.pem"), Key: good.Key}
	_, err := New(&config.FrontendTLS{Certificates: []config.Certificate{good, mismatch, missing}}, nil)
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		"certificates[1]: cert " + good.Cert + ", key " + other.Key + ": tls: private key does not match public key",
		"certificates[2]: cert " + missing.Cert + ", key " + good.Key + ": open " + missing.Cert + ": no such file or directory",
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestALPN(t *testing.T) {
	ca := newCA(t, "alpn CA")
	dir := t.TempDir()
	pair := ca.writePair(t, dir, "site", leafSpec{label: "v", names: []string{"a.example.com"}})
	s := newStore(t, &config.FrontendTLS{Certificates: []config.Certificate{pair}}, nil)
	withProtos := serve(t, s.ServerConfig([]string{"h2", "x-custom"}))
	without := serve(t, s.ServerConfig(nil))
	tests := []struct {
		name   string
		addr   string
		offer  []string
		want   string
		tls12  bool
		server string
	}{
		{name: "first match by server order", addr: withProtos, offer: []string{"x-custom", "h2"}, want: "h2"},
		{name: "custom protocol", addr: withProtos, offer: []string{"x-custom"}, want: "x-custom"},
		{name: "none of ours: handshake without ALPN", addr: withProtos, offer: []string{"imap", "smtp"}},
		{name: "none of ours over TLS 1.2", addr: withProtos, offer: []string{"imap"}, tls12: true},
		{name: "client offers nothing", addr: withProtos},
		{name: "server offers nothing", addr: without, offer: []string{"h2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clientFor(ca, "a.example.com")
			c.NextProtos = tt.offer
			if tt.tls12 {
				c.MaxVersion = tls.VersionTLS12
			}
			sess, err := dial(tt.addr, c)
			if err != nil {
				t.Fatal(err)
			}
			defer sess.conn.Close()
			if got := sess.conn.ConnectionState().NegotiatedProtocol; got != tt.want {
				t.Errorf("ALPN %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDynamicCertificates(t *testing.T) {
	ca := newCA(t, "dynamic CA")
	dir := t.TempDir()
	pair := ca.writePair(t, dir, "site", leafSpec{label: "file", names: []string{"a.example.com"}})
	s := newStore(t, &config.FrontendTLS{Certificates: []config.Certificate{pair}}, nil)
	addr := serve(t, s.ServerConfig(nil))
	insecure := func(sni string) *tls.Config { return &tls.Config{ServerName: sni, InsecureSkipVerify: true} }

	if got := served(t, addr, insecure("b.example.com")); got != "file" {
		t.Fatalf("before SetDynamic: %q, want the default", got)
	}
	if err := s.SetDynamic("acme:b", ca.tlsCert(t, leafSpec{label: "acme-1", names: []string{"b.example.com"}})); err != nil {
		t.Fatal(err)
	}
	if got := served(t, addr, clientFor(ca, "b.example.com")); got != "acme-1" {
		t.Errorf("after SetDynamic: %q, want acme-1", got)
	}
	if got := served(t, addr, insecure("127.0.0.1")); got != "file" {
		t.Errorf("no SNI: %q, the file certificate stays the default", got)
	}
	// A renewal under the same key replaces it.
	s.SetDynamic("acme:b", ca.tlsCert(t, leafSpec{label: "acme-2", names: []string{"b.example.com"}}))
	if got := served(t, addr, clientFor(ca, "b.example.com")); got != "acme-2" {
		t.Errorf("after renewal: %q, want acme-2", got)
	}
	// Same name and key type as a file certificate: the file wins.
	s.SetDynamic("acme:a", ca.tlsCert(t, leafSpec{label: "acme-a", names: []string{"a.example.com"}}))
	if got := served(t, addr, clientFor(ca, "a.example.com")); got != "file" {
		t.Errorf("a.example.com: %q, want the file certificate", got)
	}
	s.SetDynamic("acme:b", nil)
	if got := served(t, addr, insecure("b.example.com")); got != "file" {
		t.Errorf("after removal: %q, want the default", got)
	}
	if err := s.SetDynamic("bad", &tls.Certificate{}); err == nil {
		t.Error("SetDynamic accepted an empty certificate")
	}
}

func TestACMEOnlyStore(t *testing.T) {
	ca := newCA(t, "acme CA")
	s := newStore(t, &config.FrontendTLS{ACME: &config.ACME{Domains: []string{"b.example.com"}}}, nil)
	addr := serve(t, s.ServerConfig([]string{"http/1.1"}))
	if _, err := dial(addr, clientFor(ca, "b.example.com")); err == nil {
		t.Fatal("handshake succeeded before any certificate")
	}

	// tls-alpn-01: the validator asks for acme-tls/1 only and gets the challenge certificate.
	s.SetChallenge("B.example.com", ca.tlsCert(t, leafSpec{label: "challenge", names: []string{"b.example.com"}}))
	c := clientFor(ca, "b.example.com")
	c.NextProtos = []string{ACMETLS1Protocol}
	sess, err := dial(addr, c)
	if err != nil {
		t.Fatal(err)
	}
	if sess.label() != "challenge" || sess.conn.ConnectionState().NegotiatedProtocol != ACMETLS1Protocol {
		t.Errorf("challenge: served %q with ALPN %q", sess.label(), sess.conn.ConnectionState().NegotiatedProtocol)
	}
	sess.conn.Close()

	s.SetDynamic("acme", ca.tlsCert(t, leafSpec{label: "issued", names: []string{"b.example.com"}}))
	s.SetChallenge("b.example.com", nil)
	if got := served(t, addr, clientFor(ca, "b.example.com")); got != "issued" {
		t.Errorf("served %q, want issued", got)
	}
	if got := served(t, addr, &tls.Config{ServerName: "127.0.0.1", InsecureSkipVerify: true}); got != "issued" {
		t.Errorf("no SNI: served %q, want the only certificate", got)
	}
	// Without a challenge, acme-tls/1 gets the normal certificate and no ALPN.
	sess, err = dial(addr, c)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.conn.Close()
	if sess.label() != "issued" || sess.conn.ConnectionState().NegotiatedProtocol != "" {
		t.Errorf("after the challenge: served %q with ALPN %q", sess.label(), sess.conn.ConnectionState().NegotiatedProtocol)
	}
}

func TestResumptionAcrossStores(t *testing.T) {
	ca := newCA(t, "resume CA")
	dir := t.TempDir()
	pair := ca.writePair(t, dir, "site", leafSpec{label: "v", names: []string{"a.example.com"}})
	caFile := filepath.Join(dir, "clients.pem")
	writeAtomic(t, caFile, newCA(t, "client CA").pem)
	cfg := &config.FrontendTLS{Certificates: []config.Certificate{pair}}
	before := serve(t, newStore(t, cfg, nil).ServerConfig(nil))
	// A reload builds a new Store from the same configuration.
	after := serve(t, newStore(t, cfg, nil).ServerConfig(nil))
	// A reload that starts asking for client certificates must not let old tickets skip that.
	stricter := serve(t, newStore(t, &config.FrontendTLS{Certificates: []config.Certificate{pair}, ClientAuth: "optional", ClientCA: caFile}, nil).ServerConfig(nil))

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			c := clientFor(ca, "a.example.com")
			c.MaxVersion = v
			c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
			connect := func(addr string) bool {
				t.Helper()
				s, err := dial(addr, c)
				if err != nil {
					t.Fatal(err)
				}
				defer s.conn.Close()
				return s.conn.ConnectionState().DidResume
			}
			if connect(before) {
				t.Fatal("first connection resumed")
			}
			if !connect(before) {
				t.Error("second connection to the same store did not resume")
			}
			if !connect(after) {
				t.Error("connection to the reloaded store did not resume")
			}
			if connect(stricter) {
				t.Error("a ticket from a store without client_auth resumed on one with it")
			}
		})
	}
}

func TestTicketKeyRotation(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	r := newTicketRing(func() time.Time { return now })
	aad := []byte("setup")
	first, err := r.seal([]byte("session 1"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.open(first, []byte("other setup")); ok {
		t.Error("ticket opened under another binding")
	}
	tampered := append([]byte(nil), first...)
	tampered[len(tampered)-1] ^= 1
	if _, ok := r.open(tampered, aad); ok {
		t.Error("tampered ticket opened")
	}
	now = now.Add(90 * time.Minute)
	second, _ := r.seal([]byte("session 2"), aad)
	if string(first[:ticketNameLen]) == string(second[:ticketNameLen]) {
		t.Fatal("key did not rotate after 90 minutes")
	}
	for h := 1; h <= 11; h++ {
		now = now.Add(time.Hour)
		r.seal([]byte("keep rotating"), aad)
		p, ok := r.open(second, aad)
		if h < 10 && (!ok || string(p) != "session 2") {
			t.Fatalf("%d h later: a ticket of a kept key does not open", h)
		}
	}
	if _, ok := r.open(first, aad); ok {
		t.Error("a ticket of a key older than 12 rotations still opens")
	}
	if n := len(r.keys); n != ticketKeys {
		t.Errorf("%d keys kept, want %d", n, ticketKeys)
	}
	// An idle ring drops nothing, but still refuses tickets of expired keys.
	idle := newTicketRing(func() time.Time { return now })
	tk, _ := idle.seal([]byte("x"), aad)
	now = now.Add(ticketRotation * ticketKeys)
	if _, ok := idle.open(tk, aad); ok {
		t.Error("an idle ring opened a ticket older than it keeps keys")
	}
}

func TestWatcherStops(t *testing.T) {
	ca := newCA(t, "watch CA")
	dir := t.TempDir()
	cfg := &config.FrontendTLS{Certificates: []config.Certificate{ca.writePair(t, dir, "site", leafSpec{label: "v", names: []string{"a.example.com"}})}}
	ended := func(done <-chan struct{}) bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}

	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var done <-chan struct{} = s.watched
	time.Sleep(1500 * time.Millisecond) // a poll or two
	if ended(done) {
		t.Fatal("the watcher ended by itself")
	}
	s.Close()
	s.Close() // twice is fine
	waitFor(t, time.Second, "Close did not stop the watcher", func() bool { return ended(done) })

	// Dropped without Close, as by a configuration that was only validated: the watcher ends
	// once the Store is collected.
	done = func() <-chan struct{} {
		s, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.watched
	}()
	waitFor(t, 5*time.Second, "the watcher of a collected Store did not stop", func() bool {
		goruntime.GC()
		return ended(done)
	})
}
