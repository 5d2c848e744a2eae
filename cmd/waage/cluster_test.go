package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/waage/waage/internal/cluster"
	"github.com/waage/waage/internal/cluster/etcdtest"
	"github.com/waage/waage/internal/demo"
)

// TestActiveActiveExamples validates the configs of examples/active-active/ (the nodes' files
// and the cluster's), as TestHAPairExamples does for examples/ha-pair/.
func TestActiveActiveExamples(t *testing.T) {
	clearExampleEnv(t)
	if n := validateExampleDir(t, "active-active"); n != 4 {
		t.Fatalf("examples/active-active has %d configs, want lb1..lb3.yaml and cluster.yaml", n)
	}
	// The docs that show these files show them as they are.
	if shown := docsShowExampleDir(t, "active-active", filepath.Join(repoRoot, "docs", "cluster.md")); shown < 2 {
		t.Errorf("docs show %d of the active-active configs, want lb1.yaml and cluster.yaml", shown)
	}
}

func startEtcd(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	ec, err := etcdtest.Start(3)
	if err == etcdtest.ErrNoEtcd {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ec.Close)
	return ec
}

// configCmdRun runs `waage config ARGS...` in process.
func configCmdRun(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(append([]string{"config"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestConfigPushHistoryRollback: push validates as `waage validate` does and refuses a bad file
// with its errors (nothing changes), history lists the pushes, rollback writes an old one back as
// the newest.
func TestConfigPushHistoryRollback(t *testing.T) {
	ec := startEtcd(t)
	dir := t.TempDir()
	eps := strings.Join(ec.Endpoints(), ",")
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good1 := write("v1.yaml", "frontends:\n  - {name: web, listen: [\"127.0.0.1:0\"], default_backend: b}\nbackends:\n  - name: b\n    servers: [{name: s1, address: \"127.0.0.1:9001\"}]\n")
	good2 := write("v2.yaml", "frontends:\n  - {name: web, listen: [\"127.0.0.1:0\"], default_backend: b}\nbackends:\n  - name: b\n    servers: [{name: s2, address: \"127.0.0.1:9002\"}]\n")
	bad := write("bad.yaml", "frontends:\n  - {name: web, listen: [\"127.0.0.1:0\"], default_backend: nope}\nbackends:\n  - name: b\n    servers: [{name: s1, address: \"127.0.0.1:9001\", weight: -1}]\n")
	other := write("other.yaml", "etcd: {endpoints: [\"127.0.0.1:2379\"], prefix: /waage/staging/}\n")

	code, out, errOut := configCmdRun("push", "-c", good1, "--etcd", eps, "--prefix", "/waage/t/")
	if code != 0 || !strings.Contains(out, "as revision") {
		t.Fatalf("push v1: exit %d\n%s%s", code, out, errOut)
	}
	rev1 := regexp.MustCompile(`revision (\d+)`).FindStringSubmatch(out)[1]
	if code, out, errOut = configCmdRun("push", "-c", good2, "--etcd", eps, "--prefix", "/waage/t"); code != 0 {
		t.Fatalf("push v2: exit %d\n%s%s", code, out, errOut)
	}

	// A bad file: every problem with file:line:col, exit 1, and the cluster's config stays.
	code, out, errOut = configCmdRun("push", "-c", bad, "--etcd", eps, "--prefix", "/waage/t/")
	if code != 1 || !strings.Contains(errOut, bad+":2:") || !strings.Contains(errOut, bad+":5:") || !strings.Contains(errOut, "not pushed") {
		t.Errorf("push of a bad file: exit %d, stderr:\n%s", code, errOut)
	}
	// A file meant for another cluster.
	if code, _, errOut = configCmdRun("push", "-c", other, "--etcd", eps, "--prefix", "/waage/t/"); code != 1 || !strings.Contains(errOut, "etcd.prefix is /waage/staging/") {
		t.Errorf("push to another prefix: exit %d, stderr:\n%s", code, errOut)
	}
	code, out, _ = configCmdRun("show", "--etcd", eps, "--prefix", "/waage/t/")
	if code != 0 || !strings.Contains(out, "s2") {
		t.Errorf("show after the refused pushes: exit %d\n%s", code, out)
	}

	code, out, errOut = configCmdRun("history", "--etcd", eps, "--prefix", "/waage/t/")
	if code != 0 || strings.Count(out, "v1.yaml")+strings.Count(out, "v2.yaml") != 2 || !strings.Contains(out, "(current)") {
		t.Fatalf("history: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("history:\n%s", out)

	code, out, errOut = configCmdRun("rollback", rev1, "--etcd", eps, "--prefix", "/waage/t/")
	if code != 0 {
		t.Fatalf("rollback: exit %d\n%s%s", code, out, errOut)
	}
	_, out, _ = configCmdRun("show", "--etcd", eps, "--prefix", "/waage/t/")
	if !strings.Contains(out, "s1") {
		t.Errorf("after rollback to %s the config is\n%s", rev1, out)
	}
	_, out, _ = configCmdRun("history", "-n", "1", "--etcd", eps, "--prefix", "/waage/t/")
	if !strings.Contains(out, "rollback to "+rev1) {
		t.Errorf("history after the rollback:\n%s", out)
	}
	if code, _, errOut = configCmdRun("rollback", "99999", "--etcd", eps, "--prefix", "/waage/t/"); code != 1 {
		t.Errorf("rollback to a revision that does not exist: exit %d %s", code, errOut)
	}
	if code, _, _ = configCmdRun("push", "-c", good1); code != 2 {
		t.Errorf("push without etcd endpoints: exit %d, want 2", code)
	}
}

// waageNode is a `waage run` process that is a node of a cluster.
type waageNode struct {
	t     *testing.T
	bin   string
	path  string
	admin string
	cmd   *exec.Cmd
	log   *lockedBuffer
}

func (n *waageNode) start() {
	n.t.Helper()
	n.log = &lockedBuffer{}
	n.cmd = exec.Command(n.bin, "run", "-c", n.path)
	n.cmd.Stderr = n.log
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	cmd := n.cmd
	n.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// get answers GET path on the node's admin API, decoded into v.
func (n *waageNode) get(path string, v any) error {
	resp, err := http.Get("http://" + n.admin + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, body)
	}
	return json.Unmarshal(body, v)
}

// frontendAddr is the bound address of frontend web, "" while there is none.
func (n *waageNode) frontendAddr() string {
	var fes struct {
		Frontends []struct {
			Name      string   `json:"name"`
			Addresses []string `json:"addresses"`
		} `json:"frontends"`
	}
	if n.get("/api/frontends", &fes) != nil {
		return ""
	}
	for _, f := range fes.Frontends {
		if f.Name == "web" && len(f.Addresses) > 0 {
			return f.Addresses[0]
		}
	}
	return ""
}

func (n *waageNode) served() bool {
	addr := n.frontendAddr()
	if addr == "" {
		return false
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func clusterUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// TestClusterRun runs two `waage run` processes as nodes: a push reaches both, `waage ctl nodes`
// lists them and a killed one drops out after the lease TTL, and a node restarted while etcd is
// down serves its local copy of the cluster configuration.
func TestClusterRun(t *testing.T) {
	ec := startEtcd(t)
	bin := buildWaage(t)
	bs, err := demo.Start(context.Background(), []string{"A"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bs[0].Close()
	dir := t.TempDir()
	eps := strings.Join(ec.Endpoints(), ",")
	var nodes []*waageNode
	for _, name := range []string{"lb1", "lb2"} {
		n := &waageNode{t: t, bin: bin, path: filepath.Join(dir, name+".yaml"), admin: freeAddr(t)}
		text := fmt.Sprintf("etcd: {endpoints: [%s], prefix: /waage/run/, node_name: %s, state_dir: %s}\nadmin: {listen: %q}\nlog: {access: \"off\"}\n",
			strings.Join(ec.Endpoints(), ", "), name, filepath.Join(dir, name+"-state"), n.admin)
		if err := os.WriteFile(n.path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		n.start()
		nodes = append(nodes, n)
	}
	ctl := func(n *waageNode, args ...string) string {
		var out, errOut bytes.Buffer
		if code := run(append([]string{"ctl", "-a", n.admin}, args...), &out, &errOut); code != 0 {
			t.Fatalf("waage ctl %v: exit %d %s", args, code, errOut.String())
		}
		return out.String()
	}
	clusterUntil(t, 10*time.Second, "both nodes listed", func() bool {
		var ns struct{ Nodes []any }
		return nodes[0].get("/api/nodes", &ns) == nil && len(ns.Nodes) == 2
	})
	cfg := filepath.Join(dir, "cluster.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("frontends:\n  - {name: web, listen: [\"127.0.0.1:0\"], default_backend: b}\nbackends:\n  - name: b\n    servers: [{name: a, address: %q}]\n", bs[0].Addr)), 0o644)
	code, out, errOut := configCmdRun("push", "-c", cfg, "--etcd", eps, "--prefix", "/waage/run/", "-wait", "5s")
	if code != 0 {
		t.Fatalf("push: exit %d\n%s%s\nlb1:\n%s", code, out, errOut, nodes[0].log)
	}
	t.Logf("%s", strings.TrimSpace(out))
	for _, n := range nodes {
		clusterUntil(t, 2*time.Second, "served", n.served)
	}
	table := ctl(nodes[0], "nodes")
	if !strings.Contains(table, "lb1 *") || !strings.Contains(table, "lb2") || !strings.Contains(table, nodes[1].admin) {
		t.Errorf("ctl nodes:\n%s", table)
	}
	if st := ctl(nodes[0], "cluster"); !strings.Contains(st, "connected") {
		t.Errorf("ctl cluster:\n%s", st)
	}

	// lb2 killed: it drops out after the lease's TTL.
	killed := time.Now()
	nodes[1].cmd.Process.Kill()
	d := clusterUntil(t, cluster.LeaseTTL+3*time.Second, "killed node gone", func() bool {
		return !strings.Contains(ctl(nodes[0], "nodes"), "lb2")
	})
	t.Logf("killed lb2 left the list after %v (lease TTL %v)", d, cluster.LeaseTTL)
	if time.Since(killed) < cluster.LeaseTTL-2*time.Second {
		t.Errorf("lb2 gone before its lease could end")
	}

	// etcd down, lb1 restarted: it serves its local copy and says it is not connected.
	ec.StopAll()
	nodes[0].cmd.Process.Signal(syscall.SIGTERM)
	nodes[0].cmd.Wait()
	nodes[0].start()
	clusterUntil(t, 5*time.Second, "restarted lb1 serves the local copy", nodes[0].served)
	var st struct {
		Connected      bool  `json:"connected"`
		ConfigRevision int64 `json:"config_revision"`
	}
	if err := nodes[0].get("/api/cluster", &st); err != nil || st.Connected || st.ConfigRevision == 0 {
		t.Errorf("GET /api/cluster while etcd is down: %+v %v", st, err)
	}
	if !strings.Contains(nodes[0].log.String(), "serving the local copy") {
		t.Errorf("lb1's log does not mention the local copy:\n%s", nodes[0].log)
	}
	if err := ec.StartAll(); err != nil {
		t.Fatal(err)
	}
	d = clusterUntil(t, 10*time.Second, "lb1 reconnected", func() bool {
		return nodes[0].get("/api/cluster", &st) == nil && st.Connected
	})
	t.Logf("lb1 reconnected %v after etcd was started again", d)
}
