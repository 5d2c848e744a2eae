package listener

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// isNonblocking reports the O_NONBLOCK flag of ln's socket.
func isNonblocking(t *testing.T, ln *net.TCPListener) bool {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fl int
	rc.Control(func(fd uintptr) { fl, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if err != nil {
		t.Fatal(err)
	}
	return fl&unix.O_NONBLOCK != 0
}

// TestDupKeepsSocketNonblocking: os/exec calls Fd on ExtraFiles; on a Dup the socket must stay
// non-blocking, or the accept loop of the process that keeps serving it could no longer be woken.
func TestDupKeepsSocketNonblocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tl := ln.(*net.TCPListener)
	f, err := Dup(tl)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Fd()
	if !isNonblocking(t, tl) {
		t.Fatal("the socket became blocking after Fd on its Dup")
	}
	// The accept loop still wakes on a deadline.
	tl.SetDeadline(time.Now().Add(50 * time.Millisecond))
	done := make(chan error, 1)
	go func() { _, err := tl.Accept(); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Accept returned a connection nobody made")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Accept did not wake on its deadline")
	}
}

// TestHandoverRoundTrip: sockets duplicated and named by Handover come back by name from the
// environment variable, and serve the same addresses.
func TestHandoverRoundTrip(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	lf, err := Dup(ln.(*net.TCPListener))
	if err != nil {
		t.Fatal(err)
	}
	uf, err := Dup(pc)
	if err != nil {
		t.Fatal(err)
	}
	extra, env, err := Handover(map[string]*os.File{"udp u": uf, "tcp " + ln.Addr().String(): lf})
	if err != nil {
		t.Fatal(err)
	}
	if len(extra) != 2 || extra[0] != lf || extra[1] != uf {
		t.Fatalf("ExtraFiles not in name order: %v", extra)
	}
	name, value, _ := strings.Cut(env, "=")
	if name != EnvFDs {
		t.Fatalf("env %q", env)
	}
	var fds map[string]int
	if err := json.Unmarshal([]byte(value), &fds); err != nil || fds["tcp "+ln.Addr().String()] != 3 || fds["udp u"] != 4 {
		t.Fatalf("env value %s: %v", value, err)
	}
	// In this process the descriptors are not 3 and 4: name fresh duplicates, as a child would
	// see them (the set owns and closes them).
	dup := func(f *os.File) int {
		t.Helper()
		fd, err := unix.Dup(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	real, _ := json.Marshal(map[string]int{"tcp a": dup(lf), "udp u": dup(uf), "tcp gone": dup(lf)})
	lf.Close()
	uf.Close()
	in, err := parseFDs(string(real))
	if err != nil {
		t.Fatal(err)
	}
	if l, err := in.Listener("tcp missing"); l != nil || err != nil {
		t.Fatalf("a name not handed over: %v %v", l, err)
	}
	nl, err := in.Listener("tcp a")
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	if nl.Addr().String() != ln.Addr().String() {
		t.Fatalf("adopted listener on %s, want %s", nl.Addr(), ln.Addr())
	}
	ln.Close() // the first owner lets go: the adopted one serves the same socket
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial after hand-over: %v", err)
	}
	c.Close()
	nl.(*net.TCPListener).SetDeadline(time.Now().Add(3 * time.Second))
	if ac, err := nl.Accept(); err != nil {
		t.Fatalf("accept on the adopted listener: %v", err)
	} else {
		ac.Close()
	}
	nu, err := in.UDP("udp u")
	if err != nil || nu.LocalAddr().String() != pc.LocalAddr().String() {
		t.Fatalf("adopted udp socket: %v %v", nu, err)
	}
	nu.Close()
	if got := in.Close(); len(got) != 1 || got[0] != "tcp gone" {
		t.Errorf("Close returned %v, want the one socket not taken", got)
	}
	var nilSet *Inherited
	if l, err := nilSet.Listener("x"); l != nil || err != nil || nilSet.Len() != 0 || nilSet.Close() != nil {
		t.Error("a nil set is not empty")
	}
}

// TestParseFDsRefusesNonSockets: a variable naming something that is not a socket is an error,
// not a listener on a random file.
func TestParseFDsRefusesNonSockets(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, v := range []string{`{"tcp x":` + itoa(int(f.Fd())) + `}`, `{"tcp x":1}`, `{"tcp x":99999}`, `not json`} {
		if _, err := parseFDs(v); err == nil {
			t.Errorf("parseFDs(%s) accepted it", v)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
