package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// sessionLine is an L4 line of the JSON access log.
type sessionLine struct {
	Time        time.Time `json:"time"`
	Type        string    `json:"type"`
	Client      string    `json:"client"`
	Frontend    string    `json:"frontend"`
	Backend     string    `json:"backend"`
	Server      string    `json:"server"`
	BytesIn     int64     `json:"bytes_in"`
	BytesOut    int64     `json:"bytes_out"`
	DurationMs  float64   `json:"duration_ms"`
	Termination string    `json:"termination"`
}

// TestE2EL4AccessLog: tcp and udp frontends write one line per session (TCP connection, UDP
// flow) to the same access log as the http frontends, with the client, frontend, backend,
// server, bytes both ways, duration and how the session ended.
func TestE2EL4AccessLog(t *testing.T) {
	t.Parallel()
	echo := startTCPEcho(t, "e")
	uecho := startUDPEcho(t, "u")
	bs := startDemo(t, "a")
	logPath := filepath.Join(t.TempDir(), "access.log")
	rt := startWaage(t, fmt.Sprintf(`log: {access: %q, access_format: json}
frontends:
  - {name: web, listen: ["127.0.0.1:0"], default_backend: h}
  - {name: tcp, mode: tcp, listen: ["127.0.0.1:0"], backend: echo}
  - {name: closed, mode: tcp, listen: ["127.0.0.1:0"], backend: off}
  - {name: dns, mode: udp, listen: ["127.0.0.1:0"], backend: uecho, timeouts: {client_idle: 300ms}}
  - {name: quiet, mode: tcp, listen: ["127.0.0.1:0"], backend: echo, timeouts: {client_idle: 300ms}}
backends:
  - {name: h, servers: [{name: h1, address: %q}]}
  - {name: echo, servers: [{name: e1, address: %q}]}
  - {name: off, servers: [{name: o1, address: %q, state: maintenance}]}
  - {name: uecho, servers: [{name: u1, address: %q}]}
`, logPath, bs[0].Addr, echo.addr(), echo.addr(), uecho.addr()))

	echoSession(t, feAddr(t, rt, "tcp"), "ping")
	echoSession(t, feAddr(t, rt, "tcp"), "hello world")
	// A connection no server takes is closed at once, and logged too.
	c, err := net.DialTimeout("tcp", feAddr(t, rt, "closed"), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Error("the refused connection got bytes")
	}
	c.Close()
	uc, err := net.DialUDP("udp", nil, rt.Addrs("dns")[0].(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	for _, msg := range []string{"one", "three"} {
		if name := udpAsk(t, uc, msg); name != "u" {
			t.Fatalf("udp reply from %q", name)
		}
	}
	dialRaw(t, feAddr(t, rt, "web")).mustDo(t, get("/", "app.test"))
	// A TCP session that goes silent after the greeting is ended by the idle timeout.
	qc, err := net.DialTimeout("tcp", feAddr(t, rt, "quiet"), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	qc.SetDeadline(time.Now().Add(ioTimeout))
	if got, err := io.ReadAll(qc); string(got) != "e\n" || err != nil {
		t.Errorf("quiet session read %q, %v; want the greeting, then the close", got, err)
	}
	qc.Close()
	// The flow ends after its idle timeout.
	waitFor(t, 5*time.Second, "the udp flow to expire", func() bool { return udpServerOf(t, rt, "dns").FlowCount() == 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rt.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var sessions []sessionLine
	httpLines := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l sessionLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not JSON: %q: %v", sc.Text(), err)
		}
		if l.Type == "" {
			httpLines++
			continue
		}
		if time.Since(l.Time) > time.Minute || l.DurationMs < 0 || !strings.HasPrefix(l.Client, "127.0.0.1:") {
			t.Errorf("line %q: time, duration or client wrong", sc.Text())
		}
		sessions = append(sessions, l)
	}
	if httpLines != 1 {
		t.Errorf("%d http lines, want 1:\n%s", httpLines, data)
	}
	sort.Slice(sessions, func(i, j int) bool {
		a, b := sessions[i], sessions[j]
		return a.BytesIn < b.BytesIn || a.BytesIn == b.BytesIn && a.Frontend < b.Frontend
	})
	// Greeting "e\n", the echo "e LINE\n" and the goodbye "e bye\n" go out; "LINE\n" comes in.
	var got []string
	for _, l := range sessions {
		got = append(got, fmt.Sprintf("%s %s %s/%s in=%d out=%d %s", l.Type, l.Frontend, l.Backend, l.Server, l.BytesIn, l.BytesOut, l.Termination))
	}
	want := []string{
		"tcp closed off/ in=0 out=0 no_server",
		"tcp quiet echo/e1 in=0 out=2 idle_timeout",
		fmt.Sprintf("tcp tcp echo/e1 in=5 out=%d closed", len("e\ne ping\ne bye\n")),
		"udp dns uecho/u1 in=8 out=12 idle_timeout",
		fmt.Sprintf("tcp tcp echo/e1 in=12 out=%d closed", len("e\ne hello world\ne bye\n")),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("sessions:\n%s\nwant:\n%s\nlog:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), data)
	}
	for _, l := range sessions {
		if l.Type == "udp" && l.DurationMs < 300 {
			t.Errorf("udp flow lasted %gms, less than its idle timeout", l.DurationMs)
		}
	}
}

// TestE2EL4AccessLogCombined: the combined format writes sessions as one line each, in the shape
// docs/metrics.md shows.
func TestE2EL4AccessLogCombined(t *testing.T) {
	t.Parallel()
	echo := startTCPEcho(t, "e")
	logPath := filepath.Join(t.TempDir(), "access.log")
	rt := startWaage(t, fmt.Sprintf(`log: {access: %q, access_format: combined}
frontends:
  - {name: tcp, mode: tcp, listen: ["127.0.0.1:0"], backend: echo}
backends:
  - {name: echo, servers: [{name: e1, address: %q}]}
`, logPath, echo.addr()))
	echoSession(t, feAddr(t, rt, "tcp"), "ping")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rt.Shutdown(ctx)
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^127\.0\.0\.1:\d+ - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "TCP tcp" - 15 "-" "-" backend=echo server=e1 bytes_in=5 duration_ms=\d+\.\d{3} termination=closed\n$`)
	if !re.Match(data) {
		t.Errorf("combined line %q does not match %s", data, re)
	}
}
