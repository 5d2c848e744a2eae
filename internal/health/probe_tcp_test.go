package health

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// serveTCP runs handle for every connection to ln until the test ends, then closes the
// listener and every connection and waits for the handlers.
func serveTCP(t *testing.T, ln net.Listener, handle func(net.Conn)) string {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// waitClosed blocks until the peer closes c or the test's patience runs out, so that silent
// servers stay silent without leaking their goroutine.
func waitClosed(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1024)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func TestTCPProbe(t *testing.T) {
	plain := serveTCP(t, listenTCP(t), func(net.Conn) {})
	imap := serveTCP(t, listenTCP(t), func(c net.Conn) {
		_, _ = c.Write([]byte("* OK IMAP ready\r\n"))
		waitClosed(c)
	})
	redis := serveTCP(t, listenTCP(t), func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "PING\r\n" {
				_, _ = c.Write([]byte("+PONG\r\n"))
			} else {
				_, _ = c.Write([]byte("-ERR unknown command\r\n"))
			}
		}
	})
	// A reply in pieces: the expectation is met only by the second.
	slow := serveTCP(t, listenTCP(t), func(c net.Conn) {
		_, _ = c.Write([]byte("+PO"))
		time.Sleep(50 * time.Millisecond)
		_, _ = c.Write([]byte("NG\r\n"))
		waitClosed(c)
	})
	closer := serveTCP(t, listenTCP(t), func(c net.Conn) {})
	silent := serveTCP(t, listenTCP(t), waitClosed)
	refused := freeAddr(t)

	tests := []struct {
		name string
		hc   config.HealthCheck
		addr string
		want string // substring of the error; empty for healthy
	}{
		{"connect", config.HealthCheck{Type: "tcp"}, plain, ""},
		{"refused", config.HealthCheck{Type: "tcp"}, refused, "connect: connection refused"},
		{"banner substring", config.HealthCheck{Type: "tcp", Expect: "* OK"}, imap, ""},
		{"banner regex", config.HealthCheck{Type: "tcp", Expect: `~^\* OK .*ready`}, imap, ""},
		{"banner mismatch", config.HealthCheck{Type: "tcp", Expect: "+PONG"}, imap, `reply "* OK IMAP ready\r\n" does not contain "+PONG"`},
		{"banner regex mismatch", config.HealthCheck{Type: "tcp", Expect: `~^\+PONG`}, imap, `reply "* OK IMAP ready\r\n" does not match ~^\+PONG`},
		{"ping pong", config.HealthCheck{Type: "tcp", Send: "PING\r\n", Expect: "+PONG"}, redis, ""},
		{"ping pong hex", config.HealthCheck{Type: "tcp", SendHex: "50494e470d0a", Expect: `~^\+PONG\r\n$`}, redis, ""},
		{"wrong command", config.HealthCheck{Type: "tcp", Send: "PONG\r\n", Expect: "+PONG"}, redis, `reply "-ERR unknown command\r\n" does not contain "+PONG"`},
		{"send without expect", config.HealthCheck{Type: "tcp", Send: "PING\r\n"}, redis, ""},
		{"reply in pieces", config.HealthCheck{Type: "tcp", Expect: "+PONG\r\n"}, slow, ""},
		{"closed without reply", config.HealthCheck{Type: "tcp", Expect: "+PONG"}, closer, "connection closed without reply"},
		{"silent", config.HealthCheck{Type: "tcp", Expect: "+PONG"}, silent, "no reply before timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Short, as a mismatch or silence is judged only at the timeout.
			timeout := 300 * time.Millisecond
			err, took := runProbe(t, &tt.hc, tt.addr, timeout)
			checkVerdict(t, err, tt.want)
			if took > timeout+slack {
				t.Errorf("took %v with a timeout of %v", took, timeout)
			}
		})
	}
}

func TestTCPProbeLongReply(t *testing.T) {
	// A server that talks forever: the check gives up after maxRead bytes, not at the timeout.
	chatty := serveTCP(t, listenTCP(t), func(c net.Conn) {
		chunk := []byte(strings.Repeat("x", 4096))
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	err, took := runProbe(t, &config.HealthCheck{Type: "tcp", Expect: "y"}, chatty, 5*time.Second)
	checkVerdict(t, err, `reply "xxxx`)
	if took > 3*time.Second {
		t.Errorf("took %v; want it to stop after %d bytes", took, maxRead)
	}
}

func TestTCPProbeTLS(t *testing.T) {
	cert := newTestCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.cert}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTCP(t, ln, func(c net.Conn) {
		tc := c.(*tls.Conn)
		if tc.Handshake() != nil {
			return
		}
		r := bufio.NewReader(c)
		if line, err := r.ReadString('\n'); err == nil && line == "PING\r\n" {
			_, _ = c.Write([]byte("+PONG\r\n"))
		}
		waitClosed(c)
	})

	tests := []struct {
		name string
		hc   config.HealthCheck
		addr string
		want string
	}{
		{"with CA", config.HealthCheck{Type: "tcp", TLS: &config.ClientTLS{CA: cert.caFile}}, addr, ""},
		{"with CA and server name", config.HealthCheck{Type: "tcp", TLS: &config.ClientTLS{CA: cert.caFile, ServerName: "localhost"}}, addr, ""},
		{"name not in certificate", config.HealthCheck{Type: "tcp", TLS: &config.ClientTLS{CA: cert.caFile, ServerName: "example.com"}}, addr, "tls handshake: x509: certificate is valid for localhost, not example.com"},
		{"send and expect over TLS", config.HealthCheck{Type: "tcp", Send: "PING\r\n", Expect: "+PONG", TLS: &config.ClientTLS{CA: cert.caFile}}, addr, ""},
		{"without CA", config.HealthCheck{Type: "tcp", TLS: &config.ClientTLS{}}, addr, "tls handshake: x509: certificate signed by unknown authority"},
		{"insecure", config.HealthCheck{Type: "tcp", TLS: &config.ClientTLS{InsecureSkipVerify: true}}, addr, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err, _ := runProbe(t, &tt.hc, tt.addr, 2*time.Second)
			checkVerdict(t, err, tt.want)
		})
	}
}

func TestTCPProbeTLSAgainstPlainServer(t *testing.T) {
	// A plain server that never speaks: the handshake times out with the check.
	silent := serveTCP(t, listenTCP(t), waitClosed)
	err, took := runProbe(t, &config.HealthCheck{Type: "tcp", TLS: &config.ClientTLS{InsecureSkipVerify: true}}, silent, 200*time.Millisecond)
	checkVerdict(t, err, "tls handshake: timeout")
	if took > 200*time.Millisecond+slack {
		t.Errorf("took %v", took)
	}
}
