package tlsx

import (
	"crypto/tls"
	"testing"

	"github.com/waage/waage/internal/config"
)

// benchHandshakes measures complete handshakes over loopback, client and server both in this
// process (so ns/op is the CPU of both ends): full ones, or resumed with a session ticket.
func benchHandshakes(b *testing.B, rsa bool, v uint16, resume bool) {
	ca := newCA(b, "bench CA")
	dir := b.TempDir()
	cfg := &config.FrontendTLS{Certificates: []config.Certificate{
		ca.writePair(b, dir, "site", leafSpec{label: "v", names: []string{"a.example.com"}, rsa: rsa}),
	}}
	s := newStore(b, cfg, nil)
	addr := serve(b, s.ServerConfig(nil))
	client := clientFor(ca, "a.example.com")
	client.MaxVersion = v
	if resume {
		client.ClientSessionCache = tls.NewLRUClientSessionCache(1)
		sess, err := dial(addr, client)
		if err != nil {
			b.Fatal(err)
		}
		sess.conn.Close()
	}
	b.ResetTimer()
	for b.Loop() {
		sess, err := dial(addr, client)
		if err != nil {
			b.Fatal(err)
		}
		if resume && !sess.conn.ConnectionState().DidResume {
			b.Fatal("did not resume")
		}
		sess.conn.Close()
	}
}

func BenchmarkHandshake(b *testing.B) {
	for _, bc := range []struct {
		name   string
		rsa    bool
		v      uint16
		resume bool
	}{
		{"ECDSA/TLS1.3/full", false, tls.VersionTLS13, false},
		{"ECDSA/TLS1.3/resumed", false, tls.VersionTLS13, true},
		{"ECDSA/TLS1.2/full", false, tls.VersionTLS12, false},
		{"ECDSA/TLS1.2/resumed", false, tls.VersionTLS12, true},
		{"RSA2048/TLS1.3/full", true, tls.VersionTLS13, false},
		{"RSA2048/TLS1.3/resumed", true, tls.VersionTLS13, true},
	} {
		b.Run(bc.name, func(b *testing.B) { benchHandshakes(b, bc.rsa, bc.v, bc.resume) })
	}
}

// BenchmarkGetCertificate is the SNI lookup alone, among 100 names and a wildcard.
func BenchmarkGetCertificate(b *testing.B) {
	ca := newCA(b, "bench CA")
	s := &Store{dynamic: map[string]*entry{}, challenges: map[string]*tls.Certificate{}}
	for i := range 100 {
		c := ca.tlsCert(b, leafSpec{label: "v", names: []string{"h" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".example.com"}})
		s.dynamic[string(rune(i))] = &entry{cert: c, names: []string{c.Leaf.DNSNames[0]}, order: i}
	}
	w := ca.tlsCert(b, leafSpec{label: "w", names: []string{"*.example.org"}})
	s.dynamic["w"] = &entry{cert: w, names: []string{"*.example.org"}, order: 100}
	s.rebuild()
	hello := &tls.ClientHelloInfo{ServerName: "X.Example.org"}
	for b.Loop() {
		if _, err := s.getCertificate(hello); err != nil {
			b.Fatal(err)
		}
	}
}
