package h2srv

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// testTLS is a TLS configuration with a self-signed certificate for 127.0.0.1, offering h2.
func testTLS(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "h2srv test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   []string{"h2"},
	}, pool
}

// testServer serves h2srv connections on a loopback listener.
type testServer struct {
	addr  string
	stats *Stats
	pool  *x509.CertPool // set when TLS is on

	mu    sync.Mutex
	conns []*Conn
	wg    sync.WaitGroup
}

func startServer(t testing.TB, cfg *Config, h Handler, useTLS bool) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Stats == nil {
		c.Stats = new(Stats)
	}
	ts := &testServer{addr: ln.Addr().String(), stats: c.Stats}
	var tc *tls.Config
	if useTLS {
		tc, ts.pool = testTLS(t)
	}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				if tc != nil {
					tlc := tls.Server(nc, tc)
					tlc.SetDeadline(time.Now().Add(5 * time.Second))
					if tlc.Handshake() != nil {
						nc.Close()
						return
					}
					tlc.SetDeadline(time.Time{})
					nc = tlc
				}
				sc := NewConn(nc, &c, h)
				ts.mu.Lock()
				ts.conns = append(ts.conns, sc)
				ts.mu.Unlock()
				sc.Serve()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ts.mu.Lock()
		for _, sc := range ts.conns {
			sc.nc.Close()
		}
		ts.mu.Unlock()
		done := make(chan struct{})
		go func() { ts.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("connections still served 10s after the test")
		}
	})
	return ts
}

// h2cClient is Go's HTTP/2 client over plaintext (prior knowledge).
func h2cTransport() *http2.Transport {
	return &http2.Transport{
		AllowHTTP: true,
		DialTLS: func(network, addr string, _ *tls.Config) (net.Conn, error) {
			return net.Dial(network, addr)
		},
	}
}

func h2cClient() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: h2cTransport()}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawClient speaks HTTP/2 frame by frame, for what Go's client will not do.
type rawClient struct {
	t   testing.TB
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
	// Server settings seen in the handshake.
	settings map[http2.SettingID]uint32
}

// dialRaw connects, sends the preface and settings, and reads the server's SETTINGS.
func dialRaw(t testing.TB, addr string, settings ...http2.Setting) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, fr: http2.NewFramer(c, c), settings: map[http2.SettingID]uint32{}}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.fr.MaxHeaderListSize = 1 << 20
	rc.enc = hpack.NewEncoder(&rc.buf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	f := rc.read()
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	sf.ForeachSetting(func(s http2.Setting) error { rc.settings[s.ID] = s.Val; return nil })
	rc.fr.WriteSettingsAck()
	return rc
}

// read reads the next frame within 5 seconds; it fails the test on an error.
func (rc *rawClient) read() http2.Frame {
	rc.t.Helper()
	f, err := rc.readErr()
	if err != nil {
		rc.t.Fatalf("read frame: %v", err)
	}
	return f
}

func (rc *rawClient) readErr() (http2.Frame, error) {
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return rc.fr.ReadFrame()
}

// block HPACK-encodes name/value pairs.
func (rc *rawClient) block(kv ...string) []byte {
	rc.buf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		rc.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return append([]byte(nil), rc.buf.Bytes()...)
}

// get sends a GET on stream id.
func (rc *rawClient) get(id uint32, end bool, extra ...string) {
	rc.t.Helper()
	if err := rc.getErr(id, end, extra...); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawClient) getErr(id uint32, end bool, extra ...string) error {
	kv := append([]string{":method", "GET", ":scheme", "http", ":authority", "example.test", ":path", "/"}, extra...)
	return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.block(kv...), EndStream: end, EndHeaders: true})
}

// expect reads frames, skipping those match returns false for, until match returns true; it
// fails when the connection ends first.
func (rc *rawClient) expect(what string, match func(http2.Frame) bool) http2.Frame {
	rc.t.Helper()
	for {
		f, err := rc.readErr()
		if err != nil {
			rc.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(f) {
			return f
		}
	}
}

// expectGoAway reads until a GOAWAY and returns its code; the connection must close after it.
func (rc *rawClient) expectGoAway() http2.ErrCode {
	rc.t.Helper()
	f := rc.expect("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	code := f.(*http2.GoAwayFrame).ErrCode
	for {
		if _, err := rc.readErr(); err != nil {
			if isTimeout(err) {
				rc.t.Fatal("connection still open 5s after GOAWAY")
			}
			return code
		}
	}
}

func isRST(id uint32, code http2.ErrCode) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id && r.ErrCode == code
	}
}
