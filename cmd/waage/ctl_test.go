package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/waage/waage/internal/admin"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/demo"
	"github.com/waage/waage/internal/runtime"
	"github.com/waage/waage/internal/vrrp"
)

// ctlInstance is a runtime with its admin API, in-process, reloading from a file.
type ctlInstance struct {
	rt    *runtime.Runtime
	addr  string // admin API
	web   string // the http frontend
	path  string // the configuration file
	backs []*demo.Backend
}

func (in *ctlInstance) write(t *testing.T, servers int) {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("log: {access: \"off\"}\nadmin: {listen: \"127.0.0.1:9900\", token: \"tok\"}\n")
	sb.WriteString("frontends:\n  - {name: web, listen: [\"127.0.0.1:0\"], default_backend: b}\n")
	sb.WriteString("backends:\n  - name: b\n    health_check: {type: tcp, interval: 100ms}\n    servers:\n")
	for i := range servers {
		fmt.Fprintf(&sb, "      - {name: s%d, address: %q}\n", i+1, in.backs[i].Addr)
	}
	if err := os.WriteFile(in.path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func startCtlInstance(t *testing.T) *ctlInstance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	bs, err := demo.Start(ctx, []string{"a", "b", "c"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, b := range bs {
			b.Close()
		}
	})
	in := &ctlInstance{backs: bs, path: filepath.Join(t.TempDir(), "waage.yaml")}
	in.write(t, 2)
	cfg, err := config.Load(in.path)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	in.rt = runtime.New(quiet)
	if err := in.rt.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		in.rt.Shutdown(ctx)
	})
	reload := func() error {
		cfg, err := config.Load(in.path)
		if err != nil {
			return err
		}
		return in.rt.Apply(cfg)
	}
	srv := admin.New(admin.Options{Source: in.rt, Reload: reload, Logger: quiet, Version: "test"})
	// The file's admin.listen is only for show here: the test listens on a free port.
	if err := srv.Apply(config.Admin{Listen: "127.0.0.1:0", Token: "tok"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	in.addr = srv.Addr().String()
	in.web = in.rt.Addrs("web")[0].String()
	return in
}

// runCtl runs `waage ctl ARGS` and returns the exit status, stdout and stderr.
func runCtl(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(append([]string{"ctl"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// checkTable checks that a table has the header's columns and that every row's cells start where
// the header's do (aligned for people), and returns the rows' cells.
func checkTable(t *testing.T, text string, header ...string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) < 1 || strings.Join(strings.Fields(lines[0]), " ") != strings.Join(header, " ") {
		t.Fatalf("header: %q, want %q", lines[0], strings.Join(header, "  "))
	}
	var starts []int
	for _, h := range header {
		starts = append(starts, strings.Index(lines[0], h))
	}
	var rows [][]string
	for _, l := range lines[1:] {
		for i, s := range starts {
			if s > 0 && (len(l) <= s || l[s-1] != ' ' || l[s] == ' ') {
				t.Errorf("row %q: column %s does not start at %d", l, header[i], s)
			}
		}
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

func TestCtl(t *testing.T) {
	in := startCtlInstance(t)
	t.Setenv("WAAGE_TOKEN", "")
	t.Setenv("WAAGE_ADMIN_TOKEN", "")
	t.Setenv("WAAGE_ADMIN", in.addr)
	for range 4 {
		resp, err := http.Get("http://" + in.web + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for (in.rt.Server("b", "s1").LastCheck() == nil || in.rt.Server("b", "s2").LastCheck() == nil) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	code, out, errOut := runCtl("servers")
	if code != 0 {
		t.Fatalf("servers: exit %d: %s", code, errOut)
	}
	rows := checkTable(t, out, "BACKEND", "SERVER", "ADDRESS", "STATE", "HEALTH", "WEIGHT", "IN FLIGHT", "REQUESTS", "5XX", "LATENCY", "LAST CHECK")
	if len(rows) != 2 || rows[0][1] != "s1" || rows[0][2] != in.backs[0].Addr || rows[0][3] != "ready" || rows[0][4] != "up" ||
		rows[0][5] != "1" || rows[0][7] != "2" || rows[1][7] != "2" || rows[0][10] != "ok" {
		t.Errorf("servers:\n%s", out)
	}

	code, out, _ = runCtl("-o", "json", "servers")
	var js struct {
		Servers []struct {
			Name, Backend, State string
			Requests             int
		} `json:"servers"`
	}
	if err := json.Unmarshal([]byte(out), &js); code != 0 || err != nil || len(js.Servers) != 2 || js.Servers[1].Name != "s2" || js.Servers[1].Requests != 2 {
		t.Errorf("servers -o json: %d %v\n%s", code, err, out)
	}
	if code, _, errOut := runCtl("servers", "nope"); code != 1 || !strings.Contains(errOut, `unknown backend "nope"`) {
		t.Errorf("servers nope: %d %q", code, errOut)
	}

	code, out, _ = runCtl("backends")
	rows = checkTable(t, out, "BACKEND", "MODE", "ALGORITHM", "SERVERS", "UP", "USABLE", "IN FLIGHT", "REQUESTS", "5XX")
	if code != 0 || len(rows) != 1 || strings.Join(rows[0], " ") != "b http round_robin 2 2 2 0 4 0" {
		t.Errorf("backends:\n%s", out)
	}
	code, out, _ = runCtl("frontends")
	rows = checkTable(t, out, "FRONTEND", "MODE", "ADDRESSES", "ACTIVE", "CONNECTIONS", "REQUESTS", "5XX", "BYTES IN", "BYTES OUT")
	if code != 0 || len(rows) != 1 || rows[0][0] != "web" || rows[0][2] != in.web || rows[0][5] != "4" {
		t.Errorf("frontends:\n%s", out)
	}

	// Changes: refused without the token, with a hint; then with it, from the environment or -token.
	code, _, errOut = runCtl("drain", "b/s2")
	if code != 1 || !strings.Contains(errOut, "401 Unauthorized") || !strings.Contains(errOut, "WAAGE_TOKEN") {
		t.Errorf("drain without a token: %d %q", code, errOut)
	}
	if code, _, errOut := runCtl("-token", "wrong", "drain", "b/s2"); code != 1 || !strings.Contains(errOut, "wrong token") {
		t.Errorf("drain with a wrong token: %d %q", code, errOut)
	}
	t.Setenv("WAAGE_TOKEN", "tok")
	code, out, errOut = runCtl("drain", "b/s2")
	if code != 0 || out != "b/s2: state drain, weight 1, health up, 0 in flight\n" || in.rt.Server("b", "s2").State().String() != "drain" {
		t.Errorf("drain: %d %q %q", code, out, errOut)
	}
	t.Setenv("WAAGE_TOKEN", "")
	// Flags after the command work too.
	if code, out, errOut := runCtl("weight", "b/s1", "4", "-token", "tok"); code != 0 || !strings.Contains(out, "b/s1: state ready, weight 4") {
		t.Errorf("weight: %d %q %q", code, out, errOut)
	}
	code, out, _ = runCtl("maintenance", "b/s2", "-o", "json", "-token", "tok")
	var srv struct{ Name, State string }
	if err := json.Unmarshal([]byte(out), &srv); code != 0 || err != nil || srv.State != "maintenance" {
		t.Errorf("maintenance -o json: %d %v %q", code, err, out)
	}
	if code, out, _ := runCtl("-token", "tok", "enable", "b/s2"); code != 0 || !strings.Contains(out, "state ready") {
		t.Errorf("enable: %d %q", code, out)
	}
	if code, _, errOut := runCtl("-token", "tok", "drain", "b/s9"); code != 1 || !strings.Contains(errOut, "404 Not Found") || !strings.Contains(errOut, `server "s9"`) {
		t.Errorf("drain of an unknown server: %d %q", code, errOut)
	}
	if code, _, errOut := runCtl("-token", "tok", "weight", "b/s1", "5000"); code != 1 || !strings.Contains(errOut, "400 Bad Request") {
		t.Errorf("weight 5000: %d %q", code, errOut)
	}

	code, out, _ = runCtl("events")
	rows = checkTable(t, out, "TIME", "SERVER", "EVENT", "BY", "DETAIL")
	if code != 0 || !strings.Contains(out, "b/s2    state ready -> drain") || !strings.Contains(out, "weight 1 -> 4") || len(rows) != 4 {
		t.Errorf("events:\n%s", out)
	}

	// Reload: a third server from the file; a broken file is refused with its errors.
	in.write(t, 3)
	if code, out, errOut := runCtl("-token", "tok", "reload"); code != 0 || out != "configuration reloaded\n" {
		t.Errorf("reload: %d %q %q", code, out, errOut)
	}
	if in.rt.Server("b", "s3") == nil {
		t.Error("the reload did not add s3")
	}
	os.WriteFile(in.path, []byte("frontends: bogus\n"), 0o644)
	if code, _, errOut := runCtl("-token", "tok", "reload"); code != 1 || !strings.Contains(errOut, "422") || !strings.Contains(errOut, in.path+":1:") {
		t.Errorf("reload of a broken file: %d %q", code, errOut)
	}

	code, out, _ = runCtl("config")
	if code != 0 || !strings.Contains(out, "admin:\n") || !strings.Contains(out, "token: <redacted>") || strings.Contains(out, "tok\n") {
		t.Errorf("config:\n%s", out)
	}
	code, out, _ = runCtl("config", "-o", "json")
	var cfg struct {
		Backends []struct {
			Servers []struct{ Name string } `json:"servers"`
		} `json:"backends"`
	}
	if err := json.Unmarshal([]byte(out), &cfg); code != 0 || err != nil || len(cfg.Backends) != 1 || len(cfg.Backends[0].Servers) != 3 {
		t.Errorf("config -o json: %d %v\n%s", code, err, out)
	}
}

func TestCtlUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "Usage: waage ctl"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"drain"}, 2, "drain: want BACKEND/SERVER"},
		{[]string{"drain", "web"}, 2, `"web": want BACKEND/SERVER`},
		{[]string{"weight", "web/s1", "heavy"}, 2, `"heavy" is not a number`},
		{[]string{"-o", "yaml", "servers"}, 2, "want table or json"},
		{[]string{"-a", "ftp://x", "servers"}, 2, "want host:port"},
		{[]string{"-a", freeAddr(t), "servers"}, 1, "cannot reach the admin API"},
		{[]string{"deny"}, 2, "deny: want CIDR"},
		{[]string{"deny", "10.0.0.1", "10.0.0.2"}, 2, "deny: want CIDR"},
		{[]string{"deny", "10.0.0.1", "-ttl", "-1m"}, 2, "must not be negative"},
		{[]string{"deny", "10.0.0.1", "-ttl", "soon"}, 2, "invalid value"},
		{[]string{"undeny"}, 2, "undeny: want CIDR"},
		{[]string{"denied", "x"}, 2, "denied: want no arguments"},
		{[]string{"top", "5"}, 2, "-n N"},
		{[]string{"top", "-n", "0"}, 2, "-n 0: want 1 to 1000"},
		{[]string{"top", "-n", "1001"}, 2, "want 1 to 1000"},
		{[]string{"-ttl", "1m", "servers"}, 2, "-ttl: only for deny"},
		{[]string{"vrrp", "-n", "3"}, 2, "-n: only for top"},
		{[]string{"vrrp", "x"}, 2, "vrrp: want no arguments"},
	} {
		code, _, errOut := runCtl(c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("ctl %q: exit %d, stderr %q; want %d and %q", c.args, code, errOut, c.code, c.msg)
		}
	}
	if code, out, _ := runCtl("help"); code != 0 || !strings.Contains(out, "drain BACKEND/SERVER") || !strings.Contains(out, "deny CIDR [-ttl 10m]") {
		t.Errorf("help: %d %q", code, out)
	}
}

// TestRunAdmin runs the real binary with admin.listen: `waage ctl` reads and drains through it,
// POST /api/reload reloads the file, a reload moves the admin listener to a new address, and a
// new token applies at once.
func TestRunAdmin(t *testing.T) {
	bin := buildWaage(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bs, err := demo.Start(ctx, []string{"A", "B"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "waage.yaml")
	listen := freeAddr(t)
	write := func(adminAddr, token string, servers int) {
		t.Helper()
		text := fmt.Sprintf("log: {access: \"off\"}\nadmin: {listen: %q, token: %q}\nfrontends:\n  - {name: web, listen: [%q], default_backend: b}\nbackends:\n  - name: b\n    servers:\n", adminAddr, token, listen)
		for i := range servers {
			text += fmt.Sprintf("      - {name: s%d, address: %q}\n", i+1, bs[i].Addr)
		}
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	admin1 := freeAddr(t)
	write(admin1, "one", 1)
	cmd := exec.Command(bin, "run", "-c", cfgPath, "-watch=false")
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _, _ := runCtl("-a", admin1, "servers"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin API did not come up:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, out, errOut := runCtl("-a", admin1, "-token", "one", "drain", "b/s1"); code != 0 || !strings.Contains(out, "state drain") {
		t.Fatalf("drain: %d %q %q", code, out, errOut)
	}
	// POST /api/reload: the daemon reloads the file (a second server), and the drain stays.
	write(admin1, "one", 2)
	if code, out, errOut := runCtl("-a", admin1, "-token", "one", "reload"); code != 0 {
		t.Fatalf("reload: %d %q %q\n%s", code, out, errOut, logs.String())
	}
	code, out, _ := runCtl("-a", admin1, "servers")
	if code != 0 || !strings.Contains(out, "s2") || !strings.Contains(out, "s1      "+bs[0].Addr+"  drain") {
		t.Errorf("after the reload:\n%s", out)
	}
	if !strings.Contains(logs.String(), "trigger=api") {
		t.Errorf("the reload is not logged as the API's:\n%s", logs.String())
	}
	// A reload that moves the listener and changes the token (SIGHUP).
	admin2 := freeAddr(t)
	write(admin2, "two", 2)
	cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if code, _, _ := runCtl("-a", admin2, "servers"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin API did not move:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, errOut := runCtl("-a", admin2, "-token", "one", "enable", "b/s1"); code != 1 || !strings.Contains(errOut, "wrong token") {
		t.Errorf("the old token: %d %q", code, errOut)
	}
	if code, _, errOut := runCtl("-a", admin2, "-token", "two", "enable", "b/s1"); code != 0 {
		t.Errorf("the new token: %d %q", code, errOut)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if code, _, _ := runCtl("-a", admin1, "servers"); code == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the old admin address still answers")
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, out, _ = runCtl("-a", admin2, "events")
	if code != 0 || !strings.Contains(out, "reload") || !strings.Contains(out, "state ready -> drain") {
		t.Errorf("events:\n%s", out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v\n%s", err, logs.String())
	}
}

// TestCtlProtection: deny, undeny, denied and top against a running instance, as tables and as
// JSON; a denied source is refused by the frontend.
func TestCtlProtection(t *testing.T) {
	in := startCtlInstance(t)
	t.Setenv("WAAGE_TOKEN", "")
	t.Setenv("WAAGE_ADMIN_TOKEN", "")
	t.Setenv("WAAGE_ADMIN", in.addr)
	get := func(src string) error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
		resp, err := c.Get("http://" + in.web + "/")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	}
	for range 3 {
		if err := get("127.0.0.61"); err != nil {
			t.Fatal(err)
		}
	}
	if err := get("127.0.0.62"); err != nil {
		t.Fatal(err)
	}

	if code, out, errOut := runCtl("denied"); code != 0 || out != "no sources are denied\n" {
		t.Errorf("denied with none: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runCtl("deny", "127.0.0.61"); code != 1 || !strings.Contains(errOut, "401 Unauthorized") {
		t.Errorf("deny without a token: %d %q", code, errOut)
	}
	code, out, errOut := runCtl("-token", "tok", "deny", "127.0.0.61", "--ttl", "10m")
	if code != 0 || !strings.HasPrefix(out, "denied 127.0.0.61/32 until ") || !strings.Contains(out, "(10m0s)") && !strings.Contains(out, "(9m59s)") {
		t.Errorf("deny -ttl 10m: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := runCtl("deny", "198.51.100.7/24", "-token", "tok"); code != 0 || out != "denied 198.51.100.0/24 until lifted\n" {
		t.Errorf("deny: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runCtl("-token", "tok", "deny", "bogus"); code != 1 || !strings.Contains(errOut, "400 Bad Request") || !strings.Contains(errOut, `cidr "bogus"`) {
		t.Errorf("deny bogus: %d %q", code, errOut)
	}
	if err := get("127.0.0.61"); err == nil {
		t.Error("127.0.0.61 is served while denied")
	}
	if err := get("127.0.0.62"); err != nil {
		t.Errorf("127.0.0.62 is not served: %v", err)
	}

	code, out, _ = runCtl("denied")
	rows := checkTable(t, out, "CIDR", "UNTIL", "REMAINING")
	if code != 0 || len(rows) != 2 || strings.Join(rows[0], " ") != "198.51.100.0/24 lifted -" || rows[1][0] != "127.0.0.61/32" ||
		len(rows[1]) != 4 || (rows[1][3] != "10m0s" && rows[1][3] != "9m59s") {
		t.Errorf("denied:\n%s", out)
	}
	code, out, _ = runCtl("-o", "json", "denied")
	var dj struct {
		Denied []struct {
			CIDR             string     `json:"cidr"`
			Expires          *time.Time `json:"expires"`
			RemainingSeconds *int64     `json:"remaining_seconds"`
		} `json:"denied"`
	}
	if err := json.Unmarshal([]byte(out), &dj); code != 0 || err != nil || len(dj.Denied) != 2 || dj.Denied[0].Expires != nil ||
		dj.Denied[1].Expires == nil || time.Until(*dj.Denied[1].Expires) < 9*time.Minute || *dj.Denied[1].RemainingSeconds < 590 {
		t.Errorf("denied -o json: %d %v\n%s", code, err, out)
	}

	code, out, _ = runCtl("top")
	rows = checkTable(t, out, "SOURCE", "FRONTEND", "REQ/S", "CONN/S", "OPEN", "CONNECTIONS", "REQUESTS", "REFUSED", "DENIED")
	bySource := map[string][]string{}
	for _, r := range rows {
		bySource[r[0]] = r
	}
	if r := bySource["127.0.0.61"]; code != 0 || len(r) != 9 || r[1] != "web" || r[5] != "3" || r[6] != "3" || r[7] != "0" || r[8] != "yes" {
		t.Errorf("top: 127.0.0.61: %q\n%s", r, out)
	}
	if r := bySource["127.0.0.62"]; len(r) != 9 || r[5] != "2" || r[6] != "2" || r[8] != "-" {
		t.Errorf("top: 127.0.0.62: %q\n%s", r, out)
	}
	code, out, _ = runCtl("top", "-n", "1", "-o", "json")
	var tj struct {
		Sources []struct {
			Frontend    string  `json:"frontend"`
			Source      string  `json:"source"`
			Requests    uint64  `json:"requests"`
			RequestRate float64 `json:"request_rate"`
		} `json:"sources"`
	}
	if err := json.Unmarshal([]byte(out), &tj); code != 0 || err != nil || len(tj.Sources) != 1 || tj.Sources[0].Frontend != "web" {
		t.Errorf("top -n 1 -o json: %d %v\n%s", code, err, out)
	}

	if code, out, errOut := runCtl("-token", "tok", "undeny", "127.0.0.61"); code != 0 || out != "lifted the block of 127.0.0.61/32\n" {
		t.Errorf("undeny: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runCtl("-token", "tok", "undeny", "127.0.0.61"); code != 1 || !strings.Contains(errOut, "404 Not Found") || !strings.Contains(errOut, "not denied") {
		t.Errorf("undeny again: %d %q", code, errOut)
	}
	if code, out, _ := runCtl("-token", "tok", "-o", "json", "undeny", "198.51.100.0/24"); code != 0 || !strings.Contains(out, `"lifted": true`) {
		t.Errorf("undeny -o json: %d %q", code, out)
	}
	if err := get("127.0.0.61"); err != nil {
		t.Errorf("127.0.0.61 after the block was lifted: %v", err)
	}
	if code, out, _ := runCtl("vrrp"); code != 0 || out != "no VRRP instances are configured\n" {
		t.Errorf("vrrp without instances: %d %q", code, out)
	}
}

// vrrpSource is a running instance whose VRRP instances are made up: a real one needs an
// interface of its own (see the network-namespace test in internal/runtime).
type vrrpSource struct {
	*runtime.Runtime
	st []vrrp.Status
}

func (v vrrpSource) VRRPStatus() []vrrp.Status { return v.st }

// TestCtlVRRP: `waage ctl vrrp` as a table and as JSON.
func TestCtlVRRP(t *testing.T) {
	in := startCtlInstance(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := []vrrp.Status{
		{
			Name: "web-vip", Interface: "eth0", VRID: 51, State: "master", Priority: 150, EffectivePriority: 150,
			AdvertInterval: time.Second, MasterAddr: netip.MustParseAddr("192.0.2.1"), LocalAddr: netip.MustParseAddr("192.0.2.1"),
			VirtualIPs: []string{"192.0.2.10/24"}, Transitions: 2, LastTransition: time.Now().Add(-90 * time.Second),
			LastReason: "master 192.0.2.2 silent for the master down interval",
			Trackers:   []vrrp.TrackerStatus{{Kind: "backend", Name: "b", Weight: 100}, {Kind: "interface", Name: "eth1", Weight: 50}},
		},
		{
			Name: "db-vip", Interface: "eth1", VRID: 52, State: "backup", Priority: 100, EffectivePriority: 50,
			MasterAddr: netip.MustParseAddr("192.0.2.2"), Transitions: 1, LastTransition: time.Now().Add(-time.Hour),
			Trackers:  []vrrp.TrackerStatus{{Kind: "backend", Name: "db", Weight: 50, Failing: true}},
			LastError: "add 192.0.2.20/24: operation not permitted",
		},
		{Name: "new", Interface: "eth2", VRID: 53, State: "initialize", Priority: 100, EffectivePriority: 100},
	}
	srv := admin.New(admin.Options{Source: vrrpSource{in.rt, st}, Logger: quiet, Version: "test"})
	if err := srv.Apply(config.Admin{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	addr := srv.Addr().String()

	code, out, errOut := runCtl("-a", addr, "vrrp")
	if code != 0 {
		t.Fatalf("vrrp: %d %q", code, errOut)
	}
	table, extra, _ := strings.Cut(out, "\ndb-vip: last error:")
	rows := checkTable(t, table, "INSTANCE", "INTERFACE", "VRID", "STATE", "PRIORITY", "MASTER", "TRACKERS", "TRANSITIONS", "LAST CHANGE")
	if len(rows) != 3 {
		t.Fatalf("vrrp:\n%s", out)
	}
	if got := strings.Join(rows[0][:10], " "); got != "web-vip eth0 51 master 150 192.0.2.1 b=ok,eth1=ok 2 1m30s ago:" || !strings.HasSuffix(rows[0][len(rows[0])-1], "interval") {
		t.Errorf("web-vip: %q\n%s", got, out)
	}
	if got := strings.Join(rows[1], " "); got != "db-vip eth1 52 backup 50/100 192.0.2.2 db=failing 1 1h0m0s ago" {
		t.Errorf("db-vip: %q\n%s", got, out)
	}
	if got := strings.Join(rows[2], " "); got != "new eth2 53 initialize 100 - - 0 -" {
		t.Errorf("new: %q\n%s", got, out)
	}
	if extra != " add 192.0.2.20/24: operation not permitted\n" {
		t.Errorf("the last error: %q\n%s", extra, out)
	}
	code, out, _ = runCtl("-a", addr, "vrrp", "-o", "json")
	var js struct {
		Instances []struct {
			Name              string  `json:"name"`
			State             string  `json:"state"`
			EffectivePriority int     `json:"effective_priority"`
			MasterAddress     *string `json:"master_address"`
		} `json:"instances"`
	}
	if err := json.Unmarshal([]byte(out), &js); code != 0 || err != nil || len(js.Instances) != 3 || js.Instances[1].EffectivePriority != 50 ||
		js.Instances[0].MasterAddress == nil || *js.Instances[0].MasterAddress != "192.0.2.1" || js.Instances[2].MasterAddress != nil {
		t.Errorf("vrrp -o json: %d %v\n%s", code, err, out)
	}
}
