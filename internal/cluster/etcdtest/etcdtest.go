// Package etcdtest starts a real etcd cluster of several members on loopback for tests: each
// member a process of the etcd binary on free ports, its data in a temporary directory. Members
// can be killed and started again, so tests can take the quorum (or the whole cluster) away and
// give it back.
package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	bin     string
	dir     string
	members []*member
	tls     *tls.Config // the client's, when the members serve TLS
	mu      sync.Mutex
}

// TLS makes the members serve their clients over TLS with Cert and Key, and require a client
// certificate signed by CA.
type TLS struct {
	CA, Cert, Key string
	// Client is the configuration a client of the cluster uses.
	Client *tls.Config
}

type member struct {
	name, client, peer string
	args               []string
	cmd                *exec.Cmd
	done               chan struct{}
}

// ErrNoEtcd is returned by Start when no etcd binary is installed.
var ErrNoEtcd = errors.New("etcd is not installed (apt-get install etcd-server)")

// Start starts an n-member cluster and waits until it has a leader and answers.
func Start(n int) (*Cluster, error) { return StartTLS(n, nil) }

// StartTLS is Start with the clients' connections over TLS (t nil: plaintext).
func StartTLS(n int, t *TLS) (*Cluster, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, ErrNoEtcd
	}
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm" // memory: no disk syncs to wait for
	}
	dir, err := os.MkdirTemp(base, "waage-etcd-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, dir: dir}
	scheme := "http"
	if t != nil {
		c.tls, scheme = t.Client, "https"
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var initial []string
	for i := range n {
		m := &member{
			name:   fmt.Sprintf("m%d", i),
			client: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	for _, m := range c.members {
		m.args = []string{
			"--name", m.name,
			"--data-dir", filepath.Join(dir, m.name),
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", filepath.Base(dir),
			// Short elections, so the cluster comes up and survives a killed member quickly.
			"--heartbeat-interval", "25", "--election-timeout", "250",
			"--unsafe-no-fsync",
			"--logger", "zap", "--log-level", "error",
		}
		if t != nil {
			m.args = append(m.args, "--cert-file", t.Cert, "--key-file", t.Key, "--trusted-ca-file", t.CA, "--client-cert-auth")
		}
	}
	for i := range c.members {
		if err := c.StartMember(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitReady(20 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var out []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// Endpoints are the members' client addresses: host:port, or https:// URLs with TLS.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = strings.TrimPrefix(m.client, "http://")
	}
	return out
}

// StartMember starts member i (again), with the data it had.
func (c *Cluster) StartMember(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.cmd != nil {
		return nil
	}
	cmd := exec.Command(c.bin, m.args...)
	logf, err := os.OpenFile(filepath.Join(c.dir, m.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start etcd member %s: %w", m.name, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		logf.Close()
		close(done)
	}(m.done)
	return nil
}

// StopMember kills member i (SIGKILL, by PID) and waits until it is gone.
func (c *Cluster) StopMember(i int) {
	c.mu.Lock()
	m := c.members[i]
	cmd, done := m.cmd, m.done
	m.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// StopAll kills every member.
func (c *Cluster) StopAll() {
	for i := range c.members {
		c.StopMember(i)
	}
}

// StartAll starts every member that is not running and waits until the cluster answers.
func (c *Cluster) StartAll() error {
	for i := range c.members {
		if err := c.StartMember(i); err != nil {
			return err
		}
	}
	return c.WaitReady(20 * time.Second)
}

// WaitReady waits until a linearizable read succeeds (the cluster has a leader and a quorum).
func (c *Cluster) WaitReady(timeout time.Duration) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second, TLS: c.tls, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "/etcdtest/ready")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd cluster not ready after %v: %w (logs in %s)", timeout, err, c.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Client returns a client of the cluster; the caller closes it.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, TLS: c.tls, Logger: zap.NewNop()})
}

// Close kills every member and removes the data directory.
func (c *Cluster) Close() {
	c.StopAll()
	os.RemoveAll(c.dir)
}
