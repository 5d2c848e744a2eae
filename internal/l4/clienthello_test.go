package l4

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// helloRecConn records everything written through it.
type helloRecConn struct {
	net.Conn
	mu  sync.Mutex
	out []byte
}

func (c *helloRecConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.out = append(c.out, b...)
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *helloRecConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.out...)
}

// helloReplayConn replays peeked bytes before reading on from the conn, the
// way a passthrough proxy hands the backend the hello first.
type helloReplayConn struct {
	net.Conn
	r io.Reader
}

func (c *helloReplayConn) Read(b []byte) (int, error) { return c.r.Read(b) }

var helloCert = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "waage test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"example.com", "a.example.org"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
})

// helloBigALPN is an ALPN list of about 51 KB, which makes crypto/tls send a
// ClientHello that spans four records.
func helloBigALPN() []string {
	protos := make([]string, 0, 201)
	for i := range 200 {
		protos = append(protos, fmt.Sprintf("p%03d-%s", i, strings.Repeat("x", 250)))
	}
	return append(protos, "h2")
}

type helloClientCase struct {
	name       string
	serverName string
	nextProtos []string
	maxVersion uint16
	want       ClientHello
	wantProto  string // negotiated by the passthrough handshake
}

func helloClientCases() []helloClientCase {
	big := helloBigALPN()
	return []helloClientCase{
		{name: "TLS 1.3, SNI with case and trailing dot, ALPN", serverName: "Example.COM.", nextProtos: []string{"h2", "http/1.1"},
			want: ClientHello{ServerName: "example.com", ALPN: []string{"h2", "http/1.1"}}, wantProto: "h2"},
		{name: "TLS 1.2 only, SNI, ALPN", serverName: "a.example.org", nextProtos: []string{"h2", "http/1.1"}, maxVersion: tls.VersionTLS12,
			want: ClientHello{ServerName: "a.example.org", ALPN: []string{"h2", "http/1.1"}}, wantProto: "h2"},
		{name: "TLS 1.3, IP server name sends no SNI, no ALPN", serverName: "127.0.0.1",
			want: ClientHello{}},
		{name: "TLS 1.2 only, no SNI, ALPN", serverName: "127.0.0.1", nextProtos: []string{"http/1.1"}, maxVersion: tls.VersionTLS12,
			want: ClientHello{ALPN: []string{"http/1.1"}}, wantProto: "http/1.1"},
		{name: "TLS 1.3, ClientHello over four records", serverName: "a.example.org", nextProtos: big,
			want: ClientHello{ServerName: "a.example.org", ALPN: big}, wantProto: "h2"},
	}
}

func helloClientConfig(t testing.TB, c helloClientCase) *tls.Config {
	cert, err := helloCert()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	return &tls.Config{
		ServerName: c.serverName,
		NextProtos: c.nextProtos,
		MaxVersion: c.maxVersion,
		RootCAs:    roots,
	}
}

// helloCapture runs a crypto/tls client against nothing and returns the
// ClientHello records it sends.
func helloCapture(t testing.TB, c helloClientCase) []byte {
	t.Helper()
	cc, sc := net.Pipe()
	rec := &helloRecConn{Conn: cc}
	cfg := helloClientConfig(t, c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(rec, cfg).Handshake()
	}()
	defer func() { sc.Close(); <-done }()
	_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
	var hdr [5]byte
	var out, hs []byte
	for len(hs) < 4 || len(hs) < 4+(int(hs[1])<<16|int(hs[2])<<8|int(hs[3])) {
		// Read whole records until the handshake message is complete.
		if _, err := io.ReadFull(sc, hdr[:]); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if _, err := io.ReadFull(sc, body); err != nil {
			t.Fatal(err)
		}
		out = append(append(out, hdr[:]...), body...)
		hs = append(hs, body...)
	}
	return out
}

// helloRecords splits a byte stream of records into their records.
func helloRecords(b []byte) [][]byte {
	var recs [][]byte
	for len(b) >= 5 {
		n := 5 + (int(b[3])<<8 | int(b[4]))
		if n > len(b) {
			n = len(b)
		}
		recs = append(recs, b[:n])
		b = b[n:]
	}
	return recs
}

// helloFrame frames handshake data into records of the given sizes (the
// last record takes the rest).
func helloFrame(hs []byte, sizes ...int) []byte {
	var out []byte
	for i := 0; len(hs) > 0; i++ {
		n := len(hs)
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		if n > helloMaxRecordLen {
			n = helloMaxRecordLen
		}
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

// helloHandshakeData strips the record headers.
func helloHandshakeData(recs []byte) []byte {
	var hs []byte
	for _, r := range helloRecords(recs) {
		hs = append(hs, r[5:]...)
	}
	return hs
}

func TestPeekClientHelloRealClients(t *testing.T) {
	cert, err := helloCert()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range helloClientCases() {
		t.Run(c.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			defer cc.Close()
			defer sc.Close()
			deadline := time.Now().Add(20 * time.Second)
			_ = cc.SetDeadline(deadline)
			_ = sc.SetDeadline(deadline)

			rec := &helloRecConn{Conn: cc}
			type result struct {
				state tls.ConnectionState
				msg   string
				err   error
			}
			res := make(chan result, 1)
			cfg := helloClientConfig(t, c)
			go func() {
				tc := tls.Client(rec, cfg)
				if err := tc.Handshake(); err != nil {
					res <- result{err: err}
					return
				}
				if _, err := tc.Write([]byte("ping")); err != nil {
					res <- result{err: err}
					return
				}
				buf := make([]byte, 4)
				_, err := io.ReadFull(tc, buf)
				res <- result{state: tc.ConnectionState(), msg: string(buf), err: err}
			}()

			hello, peeked, err := PeekClientHello(sc)
			if err != nil {
				t.Fatalf("PeekClientHello: %v", err)
			}
			if !reflect.DeepEqual(hello, c.want) {
				t.Errorf("hello = %+v\nwant    %+v", helloShort(hello), helloShort(c.want))
			}
			if nrec := len(helloRecords(peeked)); c.name == "TLS 1.3, ClientHello over four records" && nrec != 4 {
				t.Errorf("big hello came in %d records, want 4", nrec)
			}

			// Pass the connection through: a TLS server that sees the peeked
			// bytes first must complete the handshake with the client.
			srv := tls.Server(&helloReplayConn{Conn: sc, r: io.MultiReader(bytes.NewReader(peeked), sc)}, &tls.Config{
				Certificates: []tls.Certificate{cert},
				NextProtos:   []string{"h2", "http/1.1"},
			})
			if err := srv.Handshake(); err != nil {
				t.Fatalf("server handshake after peek: %v", err)
			}
			st := srv.ConnectionState()
			if got := strings.TrimSuffix(strings.ToLower(st.ServerName), "."); got != c.want.ServerName {
				t.Errorf("server saw SNI %q, peek said %q", st.ServerName, c.want.ServerName)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(srv, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("server read %q, %v", buf, err)
			}
			if _, err := srv.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			r := <-res
			if r.err != nil {
				t.Fatalf("client: %v", r.err)
			}
			if r.msg != "pong" || r.state.NegotiatedProtocol != c.wantProto {
				t.Errorf("client got %q, protocol %q; want pong, %q", r.msg, r.state.NegotiatedProtocol, c.wantProto)
			}
			if sent := rec.written(); !bytes.HasPrefix(sent, peeked) {
				t.Errorf("peeked bytes (%d) are not a prefix of what the client sent (%d)", len(peeked), len(sent))
			}
		})
	}
}

func helloShort(h ClientHello) string {
	if len(h.ALPN) > 4 {
		return fmt.Sprintf("{ServerName:%q ALPN:%d protocols}", h.ServerName, len(h.ALPN))
	}
	return fmt.Sprintf("%+v", h)
}

func TestPeekClientHelloFraming(t *testing.T) {
	tls13 := helloCapture(t, helloClientCases()[0])
	tls12 := helloCapture(t, helloClientCases()[1])
	if n := len(helloRecords(tls13)); n != 1 {
		t.Fatalf("TLS 1.3 hello in %d records, want 1", n)
	}
	hs13 := helloHandshakeData(tls13)
	want := ClientHello{ServerName: "example.com", ALPN: []string{"h2", "http/1.1"}}
	want12 := ClientHello{ServerName: "a.example.org", ALPN: []string{"h2", "http/1.1"}}
	trailer := []byte("\x17\x03\x03\x00\x05early")

	tests := []struct {
		name  string
		input []byte
		wrap  func(io.Reader) io.Reader
		want  ClientHello
	}{
		{name: "one record", input: tls13, want: want},
		{name: "TLS 1.2 one record", input: tls12, want: want12},
		{name: "two records, split in the middle", input: helloFrame(hs13, len(hs13)/2), want: want},
		{name: "two records, split in the handshake header", input: helloFrame(hs13, 2), want: want},
		{name: "two records, 1-byte first", input: helloFrame(hs13, 1), want: want},
		{name: "two records, 1-byte last", input: helloFrame(hs13, len(hs13)-1), want: want},
		{name: "many small records", input: helloFrame(hs13, 3, 1, 7, 100, 13, 200), want: want},
		{name: "one byte at a time", input: tls13, wrap: iotest.OneByteReader, want: want},
		{name: "two records one byte at a time", input: helloFrame(hs13, 300), wrap: iotest.OneByteReader, want: want},
		{name: "half reads", input: helloFrame(hs13, 300), wrap: iotest.HalfReader, want: want},
		{name: "record version 0x0300", input: append([]byte{22, 3, 0}, tls13[3:]...), want: want},
		{name: "record version 0x0304", input: append([]byte{22, 3, 4}, tls13[3:]...), want: want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, extra := range [][]byte{nil, trailer} {
				in := append(append([]byte(nil), tt.input...), extra...)
				br := bytes.NewReader(in)
				var r io.Reader = br
				if tt.wrap != nil {
					r = tt.wrap(br)
				}
				hello, raw, err := PeekClientHello(r)
				if err != nil {
					t.Fatalf("PeekClientHello: %v", err)
				}
				if !reflect.DeepEqual(hello, tt.want) {
					t.Errorf("hello = %+v, want %+v", hello, tt.want)
				}
				if !bytes.Equal(raw, tt.input) {
					t.Errorf("returned %d bytes, want the %d input bytes", len(raw), len(tt.input))
				}
				if br.Len() != len(extra) {
					t.Errorf("%d bytes left unread, want %d", br.Len(), len(extra))
				}
			}
		})
	}
}

func TestPeekClientHelloNotTLS(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantRaw string
	}{
		{name: "HTTP request", input: "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", wantRaw: "GET /"},
		{name: "SSH banner", input: "SSH-2.0-OpenSSH_9.6\r\n", wantRaw: "SSH-2"},
		{name: "single byte", input: "G", wantRaw: "G"},
		{name: "single handshake byte then EOF", input: "\x16", wantRaw: "\x16"},
		{name: "partial header then EOF", input: "\x16\x03\x01\x02", wantRaw: "\x16\x03\x01\x02"},
		{name: "empty", input: "", wantRaw: ""},
		{name: "alert record", input: "\x15\x03\x03\x00\x02\x02\x28", wantRaw: "\x15\x03\x03\x00\x02"},
		{name: "application data record", input: "\x17\x03\x03\x00\x01x", wantRaw: "\x17\x03\x03\x00\x01"},
		{name: "SSLv2 compatible hello", input: "\x80\x2e\x01\x03\x01\x00\x15", wantRaw: "\x80\x2e\x01\x03\x01"},
		{name: "binary garbage", input: "\x00\x00\x00\x00\x00\x00", wantRaw: "\x00\x00\x00\x00\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := strings.NewReader(tt.input)
			hello, raw, err := PeekClientHello(br)
			if !errors.Is(err, ErrNotTLS) || errors.Is(err, errMalformedHello) {
				t.Fatalf("err = %v, want ErrNotTLS", err)
			}
			if !reflect.DeepEqual(hello, ClientHello{}) {
				t.Errorf("hello = %+v, want zero", hello)
			}
			if string(raw) != tt.wantRaw {
				t.Errorf("raw = %q, want %q", raw, tt.wantRaw)
			}
			if read := len(tt.input) - br.Len(); read > 5 {
				t.Errorf("read %d bytes before deciding, want at most 5", read)
			}
		})
	}
}

// helloErrAfter returns data, then err.
type helloErrAfter struct {
	data []byte
	err  error
}

func (r *helloErrAfter) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(b, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestPeekClientHelloReadErrors(t *testing.T) {
	tls13 := helloCapture(t, helloClientCases()[0])
	tests := []struct {
		name      string
		data      []byte
		notTLS    bool
		malformed bool
	}{
		{name: "deadline before any byte", data: nil},
		{name: "deadline after a handshake byte", data: []byte{22}},
		{name: "deadline after a plain-text byte", data: []byte("G"), notTLS: true},
		{name: "deadline inside the record", data: tls13[:100]},
		{name: "deadline between records", data: helloFrame(helloHandshakeData(tls13), 100)[:105]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, raw, err := PeekClientHello(&helloErrAfter{data: tt.data, err: os.ErrDeadlineExceeded})
			switch {
			case tt.notTLS:
				if !errors.Is(err, ErrNotTLS) {
					t.Fatalf("err = %v, want ErrNotTLS", err)
				}
			default:
				if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrNotTLS) || errors.Is(err, errMalformedHello) {
					t.Fatalf("err = %v, want a deadline error only", err)
				}
			}
			if !bytes.Equal(raw, tt.data) {
				t.Errorf("raw = %d bytes, want the %d read", len(raw), len(tt.data))
			}
		})
	}
}

// helloSpec builds a ClientHello from parts, to make malformed ones.
type helloSpec struct {
	version  uint16
	sid      []byte
	suites   []byte
	comp     []byte
	noExts   bool
	exts     []byte // raw extensions block contents
	extsLen  int    // overrides the extensions length when non-zero
	trailing []byte // after the extensions, inside the message
}

func helloU16(n int) []byte { return []byte{byte(n >> 8), byte(n)} }

func helloExt(typ int, data []byte) []byte {
	return append(append(helloU16(typ), helloU16(len(data))...), data...)
}

func helloSNIExt(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, 0)
		list = append(append(list, helloU16(len(n))...), n...)
	}
	return helloExt(0, append(helloU16(len(list)), list...))
}

func helloALPNExt(protos ...string) []byte {
	var list []byte
	for _, p := range protos {
		list = append(append(list, byte(len(p))), p...)
	}
	return helloExt(16, append(helloU16(len(list)), list...))
}

func helloCat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func (s helloSpec) body() []byte {
	v := s.version
	if v == 0 {
		v = 0x0303
	}
	b := helloU16(int(v))
	b = append(b, make([]byte, 32)...)
	b = append(append(b, byte(len(s.sid))), s.sid...)
	suites := s.suites
	if suites == nil {
		suites = []byte{0x13, 0x01, 0xc0, 0x2f}
	}
	b = append(append(b, helloU16(len(suites))...), suites...)
	comp := s.comp
	if comp == nil {
		comp = []byte{0}
	}
	b = append(append(b, byte(len(comp))), comp...)
	if !s.noExts {
		n := len(s.exts)
		if s.extsLen != 0 {
			n = s.extsLen
		}
		b = append(append(b, helloU16(n)...), s.exts...)
	}
	return append(b, s.trailing...)
}

func helloMsg(typ byte, body []byte) []byte {
	n := len(body)
	return append([]byte{typ, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

func (s helloSpec) records() []byte { return helloFrame(helloMsg(1, s.body())) }

func helloRecord(typ byte, version uint16, payload []byte) []byte {
	return append([]byte{typ, byte(version >> 8), byte(version), byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

func TestPeekClientHelloBuilt(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  ClientHello
	}{
		{name: "no extensions", input: helloSpec{noExts: true}.records(), want: ClientHello{}},
		{name: "empty extensions block", input: helloSpec{}.records(), want: ClientHello{}},
		{name: "SNI only", input: helloSpec{exts: helloSNIExt("WWW.Example.Net.")}.records(), want: ClientHello{ServerName: "www.example.net"}},
		{name: "SNI with only one trailing dot stripped", input: helloSpec{exts: helloSNIExt("a..")}.records(), want: ClientHello{ServerName: "a."}},
		{name: "SNI with an unknown name type is skipped", input: helloSpec{exts: helloExt(0, helloCat(helloU16(14), []byte{7, 0, 3}, []byte("xyz"), []byte{0, 0, 5}, []byte("a.b.c")))}.records(), want: ClientHello{ServerName: "a.b.c"}},
		{name: "SNI list with only an unknown name type", input: helloSpec{exts: helloExt(0, helloCat(helloU16(6), []byte{7, 0, 3}, []byte("xyz")))}.records(), want: ClientHello{}},
		{name: "ALPN only", input: helloSpec{exts: helloALPNExt("spdy/3", "\x00\xff")}.records(), want: ClientHello{ALPN: []string{"spdy/3", "\x00\xff"}}},
		{name: "ALPN before SNI among other extensions", input: helloSpec{exts: helloCat(helloExt(21, make([]byte, 10)), helloALPNExt("h2"), helloExt(43, []byte{2, 3, 4}), helloSNIExt("x.test"), helloExt(0xfe0d, nil))}.records(), want: ClientHello{ServerName: "x.test", ALPN: []string{"h2"}}},
		{name: "session_id of 32 bytes", input: helloSpec{sid: make([]byte, 32), noExts: true}.records(), want: ClientHello{}},
		{name: "SSL 3.0 legacy_version", input: helloSpec{version: 0x0300, noExts: true}.records(), want: ClientHello{}},
		{name: "padded to span five records", input: helloSpec{exts: helloCat(helloSNIExt("big.test"), helloExt(21, make([]byte, 65000)))}.records(), want: ClientHello{ServerName: "big.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello, raw, err := PeekClientHello(bytes.NewReader(tt.input))
			if err != nil {
				t.Fatalf("PeekClientHello: %v", err)
			}
			if !reflect.DeepEqual(hello, tt.want) {
				t.Errorf("hello = %+v, want %+v", hello, tt.want)
			}
			if !bytes.Equal(raw, tt.input) {
				t.Errorf("raw differs from input")
			}
		})
	}
}

// helloMalformedCases are inputs that start a handshake record but do not
// carry a well-formed ClientHello, with a fragment of the expected reason.
func helloMalformedCases() []struct {
	name, input, reason string
} {
	valid := helloSpec{exts: helloSNIExt("ok.test")}.body()
	bigHS := helloMsg(1, helloSpec{exts: helloExt(21, make([]byte, 70000))}.body())
	type c = struct{ name, input, reason string }
	return []c{
		{"record version 0x0200", string(helloRecord(22, 0x0200, helloMsg(1, valid))), "record version"},
		{"record version 0x0305", string(helloRecord(22, 0x0305, helloMsg(1, valid))), "record version"},
		{"record version 0x0403", string(helloRecord(22, 0x0403, helloMsg(1, valid))), "record version"},
		{"record length 0", "\x16\x03\x01\x00\x00", "empty"},
		{"record length 16385", "\x16\x03\x01\x40\x01" + strings.Repeat("\x00", 100), "record length"},
		{"record length 65535", "\x16\x03\x01\xff\xff", "record length"},
		{"handshake type server_hello", string(helloFrame(helloMsg(2, valid))), "handshake type 2"},
		{"handshake type 0 in a split header", string(helloFrame(helloMsg(0, valid), 1, 1)), "handshake type 0"},
		{"record ends before the handshake message", string(helloFrame(helloMsg(1, valid)))[:40], "truncated"},
		{"stream ends between records", string(helloFrame(helloMsg(1, valid), 20))[:25], "truncated"},
		{"stream ends in the header of the second record", string(helloFrame(helloMsg(1, valid), 20))[:27], "truncated"},
		{"body truncated inside the record", string(helloFrame(helloMsg(1, valid[:34+1+1]))), "truncated cipher_suites"},
		{"body ends in random", string(helloFrame(helloMsg(1, valid[:20]))), "truncated random"},
		{"empty body", string(helloFrame(helloMsg(1, nil))), "legacy_version"},
		{"session_id of 33 bytes", string(helloSpec{sid: make([]byte, 33)}.records()), "session_id"},
		{"odd cipher_suites length", string(helloSpec{suites: []byte{0x13, 0x01, 0xc0}}.records()), "cipher_suites"},
		{"no cipher suites", string(helloSpec{suites: []byte{}}.records()), "cipher_suites"},
		{"no compression methods", string(helloSpec{comp: []byte{}}.records()), "compression"},
		{"extensions length one too long", string(helloSpec{exts: helloSNIExt("ok.test"), extsLen: len(helloSNIExt("ok.test")) + 1}.records()), "extensions length"},
		{"extensions length one too short", string(helloSpec{exts: helloSNIExt("ok.test"), extsLen: len(helloSNIExt("ok.test")) - 1}.records()), "extensions length"},
		{"a single byte after compression", string(helloSpec{noExts: true, trailing: []byte{0}}.records()), "extensions length"},
		{"bytes after the extensions", string(helloSpec{exts: helloSNIExt("ok.test"), trailing: []byte{0, 0}}.records()), "extensions length"},
		{"truncated extension header", string(helloSpec{exts: []byte{0, 21, 0}}.records()), "truncated extension"},
		{"duplicate extension", string(helloSpec{exts: helloCat(helloExt(43, []byte{2, 3, 4}), helloExt(43, []byte{2, 3, 4}))}.records()), "duplicate extension 43"},
		{"duplicate SNI", string(helloSpec{exts: helloCat(helloSNIExt("a.test"), helloSNIExt("a.test"))}.records()), "duplicate extension 0"},
		{"SNI with NUL", string(helloSpec{exts: helloSNIExt("ok.test\x00.evil")}.records()), "host_name byte 0x0"},
		{"SNI with space", string(helloSpec{exts: helloSNIExt("ok test")}.records()), "host_name byte 0x20"},
		{"SNI with DEL", string(helloSpec{exts: helloSNIExt("ok\x7ftest")}.records()), "host_name byte"},
		{"SNI with UTF-8", string(helloSpec{exts: helloSNIExt("bücher.test")}.records()), "host_name byte"},
		{"SNI only a dot", string(helloSpec{exts: helloSNIExt(".")}.records()), "only a dot"},
		{"SNI with two host names", string(helloSpec{exts: helloSNIExt("a.test", "b.test")}.records()), "more than one host_name"},
		{"SNI with an empty host name", string(helloSpec{exts: helloSNIExt("")}.records()), "empty server_name"},
		{"SNI empty extension", string(helloSpec{exts: helloExt(0, nil)}.records()), "server_name list length"},
		{"SNI empty list", string(helloSpec{exts: helloExt(0, helloU16(0))}.records()), "empty server_name list"},
		{"SNI bytes after the list", string(helloSpec{exts: helloExt(0, append(helloSNIExt("a.test")[4:], 0))}.records()), "server_name list length"},
		{"SNI name longer than the list", string(helloSpec{exts: helloExt(0, helloCat(helloU16(5), []byte{0, 0, 9}, []byte("ab")))}.records()), "truncated server_name"},
		{"ALPN empty list", string(helloSpec{exts: helloExt(16, helloU16(0))}.records()), "empty ALPN list"},
		{"ALPN empty protocol", string(helloSpec{exts: helloALPNExt("h2", "")}.records()), "empty ALPN protocol"},
		{"ALPN protocol longer than the list", string(helloSpec{exts: helloExt(16, helloCat(helloU16(3), []byte{5}, []byte("h2")))}.records()), "truncated ALPN"},
		{"ALPN list length mismatch", string(helloSpec{exts: helloExt(16, helloCat(helloU16(2), []byte{2}, []byte("h2")))}.records()), "ALPN list length"},
		{"data after the ClientHello in its record", string(helloFrame(append(helloMsg(1, valid), 20, 0, 0, 0))), "after the ClientHello"},
		{"extra record data after a split ClientHello", string(helloFrame(append(helloMsg(1, valid), 20, 0, 0, 0), 10)), "after the ClientHello"},
		{"alert interleaved between records", string(helloFrame(helloMsg(1, valid), 10))[:15] + "\x15\x03\x03\x00\x02\x02\x28", "not a handshake record"},
		{"bad version on the second record", string(helloFrame(helloMsg(1, valid), 10))[:15] + "\x16\x02\x00\x00\x10", "record version"},
		{"handshake length over 64 KiB", string(helloFrame(bigHS[:1000])), "over 64 KiB"},
		{"handshake length 0xffffff", "\x16\x03\x01\x00\x04\x01\xff\xff\xff", "over 64 KiB"},
		{"oversized reassembly", string(helloFrame(bigHS)), "over 64 KiB"},
	}
}

func TestPeekClientHelloMalformed(t *testing.T) {
	for _, tt := range helloMalformedCases() {
		t.Run(tt.name, func(t *testing.T) {
			br := strings.NewReader(tt.input)
			hello, raw, err := PeekClientHello(br)
			if !errors.Is(err, errMalformedHello) || errors.Is(err, ErrNotTLS) {
				t.Fatalf("err = %v, want a malformed ClientHello", err)
			}
			if !strings.HasPrefix(err.Error(), "l4: malformed ClientHello: ") || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("err = %q, want it to mention %q", err, tt.reason)
			}
			if !reflect.DeepEqual(hello, ClientHello{}) {
				t.Errorf("hello = %+v, want zero", hello)
			}
			if read := len(tt.input) - br.Len(); read != len(raw) || !strings.HasPrefix(tt.input, string(raw)) {
				t.Errorf("raw (%d bytes) is not exactly the %d bytes read", len(raw), read)
			}
			if len(raw) > helloMaxHandshakeLen+helloRecordHeaderLen*len(helloRecords(raw)) {
				t.Errorf("read %d bytes", len(raw))
			}
		})
	}
}

func TestPeekClientHelloStopsEarly(t *testing.T) {
	// An over-long handshake length is refused without reading the rest.
	in := helloFrame(helloMsg(1, helloSpec{exts: helloExt(21, make([]byte, 70000))}.body()))
	br := bytes.NewReader(in)
	_, raw, err := PeekClientHello(br)
	if !errors.Is(err, errMalformedHello) {
		t.Fatalf("err = %v", err)
	}
	if len(raw) != 5+helloMaxRecordLen {
		t.Errorf("read %d bytes, want only the first record (%d)", len(raw), 5+helloMaxRecordLen)
	}
}

func FuzzPeekClientHello(f *testing.F) {
	// Seeds stay small: the fuzzer spends minutes minimizing inputs derived
	// from the 50 KB ones, which the unit tests cover.
	const maxSeed = 4 << 10
	for _, c := range helloClientCases() {
		if b := helloCapture(f, c); len(b) <= maxSeed {
			f.Add(b)
		}
	}
	tls13 := helloCapture(f, helloClientCases()[0])
	f.Add(helloFrame(helloHandshakeData(tls13), 2))
	f.Add(helloFrame(helloHandshakeData(tls13), 300))
	f.Add(helloSpec{noExts: true}.records())
	f.Add(helloSpec{exts: helloCat(helloSNIExt("A.Test."), helloALPNExt("h2", "x"))}.records())
	for _, c := range helloMalformedCases() {
		if len(c.input) <= maxSeed {
			f.Add([]byte(c.input))
		}
	}
	// A handshake length over 64 KiB, the header in a record of its own.
	f.Add(helloFrame(helloMsg(1, make([]byte, 70000))[:maxSeed], 4))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("SSH-2.0-x\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bytes.NewReader(data)
		hello, raw, err := PeekClientHello(br)
		if read := len(data) - br.Len(); read != len(raw) || !bytes.HasPrefix(data, raw) {
			t.Fatalf("raw (%d bytes) is not exactly the %d bytes read", len(raw), read)
		}
		if len(raw) > helloMaxHandshakeLen+helloRecordHeaderLen*len(helloRecords(raw)) {
			t.Fatalf("read %d bytes in %d records", len(raw), len(helloRecords(raw)))
		}
		if err != nil {
			if errors.Is(err, ErrNotTLS) == errors.Is(err, errMalformedHello) {
				t.Fatalf("err = %v: want exactly one of ErrNotTLS, malformed", err)
			}
			if errors.Is(err, ErrNotTLS) && len(raw) > 5 {
				t.Fatalf("ErrNotTLS after %d bytes", len(raw))
			}
			if !reflect.DeepEqual(hello, ClientHello{}) {
				t.Fatalf("hello %+v with error %v", hello, err)
			}
			return
		}
		if hello.ServerName != strings.ToLower(hello.ServerName) {
			t.Fatalf("ServerName %q not lower-case", hello.ServerName)
		}
		for _, c := range []byte(hello.ServerName) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("ServerName %q has byte %#x", hello.ServerName, c)
			}
		}
		if hello.ALPN != nil && len(hello.ALPN) == 0 {
			t.Fatal("empty non-nil ALPN")
		}
		for _, p := range hello.ALPN {
			if p == "" {
				t.Fatal("empty ALPN protocol")
			}
		}
		if len(data) > maxSeed {
			return
		}
		// Reading in 1-byte chunks gives the same answer.
		h2, raw2, err2 := PeekClientHello(iotest.OneByteReader(bytes.NewReader(data)))
		if err2 != nil || !reflect.DeepEqual(h2, hello) || !bytes.Equal(raw2, raw) {
			t.Fatalf("one-byte reads differ: %+v %v", h2, err2)
		}
	})
}
