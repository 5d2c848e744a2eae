package runtime

// End-to-end tests of the certificate store under a running tcp frontend that terminates TLS:
// a renewed certificate on disk is served without a reload or restart, and session tickets
// survive a configuration reload.

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// renameOver replaces path with data by renaming a new file over it, as certificate tools do.
func renameOver(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// servedCN handshakes with addr and returns the common name of the certificate it presented.
func servedCN(t testing.TB, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestE2ETLSStoreCertificateSwap renews the certificate files under a running tcp frontend: new
// handshakes get the new certificate within about a second, a connection opened before keeps
// working, and waage logs the reload.
func TestE2ETLSStoreCertificateSwap(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := ca.leafFiles(t, dir, "site-v1", "a.example.com")
	echo := startTCPEcho(t, "plain")
	rt, logs := startWaageLog(t, tcpConfig(fmt.Sprintf("    tls: {certificates: [{cert: %q, key: %q}]}\n", certFile, keyFile), "", echo.addr()))
	addr := feAddr(t, rt, "tcp")
	client := &tls.Config{ServerName: "a.example.com", RootCAs: ca.pool}

	old, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, client)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	old.SetDeadline(time.Now().Add(ioTimeout))
	br := bufio.NewReader(old)
	if greet, err := br.ReadString('\n'); err != nil || greet != "plain\n" {
		t.Fatalf("greeting %q, %v", greet, err)
	}

	c, k := ca.leafPEM(t, "site-v2", "a.example.com")
	renameOver(t, keyFile, k)
	renameOver(t, certFile, c)
	start := time.Now()
	for servedCN(t, addr, client) != "site-v2" {
		if time.Since(start) > 3*time.Second {
			t.Fatal("the renewed certificate is not served after 3 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("renewed certificate served after %v", time.Since(start).Round(10*time.Millisecond))

	fmt.Fprintf(old, "after the swap\n")
	if got, err := br.ReadString('\n'); err != nil || got != "plain after the swap\n" {
		t.Errorf("connection opened before the swap: %q, %v", got, err)
	}
	if cn := old.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "site-v1" {
		t.Errorf("connection opened before the swap reports %s", cn)
	}
	if l := logs.String(); !strings.Contains(l, "certificate reloaded") || !strings.Contains(l, "frontend=tcp") {
		t.Errorf("reload not logged with its frontend:\n%s", l)
	}

	// A broken replacement keeps the current certificate.
	renameOver(t, certFile, []byte("not a certificate"))
	time.Sleep(2200 * time.Millisecond)
	if cn := servedCN(t, addr, client); cn != "site-v2" {
		t.Errorf("after a broken replacement: served %s, want site-v2", cn)
	}
	if n := strings.Count(logs.String(), "certificate not reloaded"); n != 1 {
		t.Errorf("%d warnings about the broken file, want 1", n)
	}
}

// TestE2ETLSStoreResumeAcrossReload: a client that got a session ticket before a configuration
// reload resumes its session after it, since the ticket keys belong to the process.
func TestE2ETLSStoreResumeAcrossReload(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := ca.leafFiles(t, dir, "resume", "a.example.com")
	e1, e2 := startTCPEcho(t, "e1"), startTCPEcho(t, "e2")
	conf := func(server string) string {
		return tcpConfig(fmt.Sprintf("    tls: {certificates: [{cert: %q, key: %q}]}\n", certFile, keyFile), "", server)
	}
	rt := startWaage(t, conf(e1.addr()))
	addr := feAddr(t, rt, "tcp")

	// Each reload moves the frontend to the other echo server, so a session that names the new
	// one proves it ran on the reloaded configuration.
	servers := map[string]string{"e1": e1.addr(), "e2": e2.addr()}
	current, other := "e1", "e2"
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		client := &tls.Config{ServerName: "a.example.com", RootCAs: ca.pool, MaxVersion: v,
			ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		if name, cs := tlsEchoSession(t, addr, client); name != current || cs.DidResume {
			t.Fatalf("%s first session: server %s, resumed %v; want %s, not resumed", tls.VersionName(v), name, cs.DidResume, current)
		}
		cfg, err := parseForTest(conf(servers[other]))
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		current, other = other, current
		name, cs := tlsEchoSession(t, addr, client)
		if name != current {
			t.Errorf("%s after the reload: server %s, want %s", tls.VersionName(v), name, current)
		}
		if !cs.DidResume {
			t.Errorf("%s: the session did not resume after the reload", tls.VersionName(v))
		}
	}
}
