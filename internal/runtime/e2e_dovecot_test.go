package runtime

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dovecot is a real Dovecot IMAP server run in the foreground for one test, listening on a
// PROXY-protocol port (haproxy = yes), as behind HAProxy in production.
type dovecot struct {
	t    *testing.T
	dir  string
	port int
	cmd  *exec.Cmd
}

const dovecotConf = `base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
haproxy_trusted_networks = 127.0.0.0/8
mail_location = maildir:%[1]s/mail/%%u
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/users
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=%[1]s/mail/%%u
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imap_haproxy {
    port = %[2]d
    haproxy = yes
  }
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
`

func startDovecot(t *testing.T) *dovecot {
	t.Helper()
	bin := peerTool(t, "dovecot", "dovecot-imapd")
	// Dovecot's unprivileged processes must reach the directory.
	dir, err := os.MkdirTemp("", "waage-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	d := &dovecot{t: t, dir: dir, port: peerPort(t)}
	for _, sub := range []string{"run", "state", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exec.Command("chown", "dovecot:dovecot", filepath.Join(dir, "mail")).Run()
	os.WriteFile(filepath.Join(dir, "users"), []byte("alice:{PLAIN}secret\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "dovecot.conf"), fmt.Appendf(nil, dovecotConf, dir, d.port), 0o644)
	d.cmd = exec.Command(bin, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	waitFor(t, 10*time.Second, "dovecot listening", func() bool {
		c, err := net.Dial("tcp", d.addr())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return d
}

func (d *dovecot) addr() string { return fmt.Sprintf("127.0.0.1:%d", d.port) }

// stop ends the master with SIGTERM (it stops its children) and then the process group.
func (d *dovecot) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	d.cmd = nil
}

func (d *dovecot) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dovecot.log"))
	return string(b)
}

// imapLogin talks IMAP from the source address 127.0.0.2: greeting, LOGIN, SELECT, LOGOUT.
func imapLogin(t *testing.T, addr string) error {
	t.Helper()
	dl := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c, err := dl.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "* OK") {
		return fmt.Errorf("greeting %q: %v", line, err)
	}
	for _, cmd := range []string{"a1 LOGIN alice secret", "a2 SELECT INBOX", "a3 LOGOUT"} {
		tag, _, _ := strings.Cut(cmd, " ")
		fmt.Fprintf(c, "%s\r\n", cmd)
		for {
			line, err = br.ReadString('\n')
			if err != nil {
				return fmt.Errorf("%s: %v", cmd, err)
			}
			if strings.HasPrefix(line, tag+" ") {
				if !strings.HasPrefix(line, tag+" OK") {
					return fmt.Errorf("%s: %q", cmd, line)
				}
				break
			}
		}
	}
	return nil
}

// TestE2EDovecotIMAP is the classic L4 setup: waage (tcp) in front of two Dovecot servers that
// take the PROXY protocol, with a tcp health check that expects the IMAP greeting. Dovecot logs
// the client's own address; when one server dies, logins go on on the other.
func TestE2EDovecotIMAP(t *testing.T) {
	t.Parallel()
	d1, d2 := startDovecot(t), startDovecot(t)
	rt := startWaage(t, tcpConfig("", `    proxy_protocol: v2
    health_check: {type: tcp, expect: "~^\\* OK", interval: 200ms, timeout: 500ms, fall: 1, rise: 1}
`, d1.addr(), d2.addr()))
	addr := feAddr(t, rt, "tcp")
	waitFor(t, 5*time.Second, "both dovecots checked", func() bool {
		return rt.Server("b", "s1").Checks.Load() > 0 && rt.Server("b", "s2").Checks.Load() > 0
	})
	if !rt.Server("b", "s1").Healthy() || !rt.Server("b", "s2").Healthy() {
		t.Fatalf("a dovecot is DOWN: %+v %+v", rt.Server("b", "s1").LastCheck(), rt.Server("b", "s2").LastCheck())
	}
	for i := 0; i < 4; i++ {
		if err := imapLogin(t, addr); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	for _, d := range []*dovecot{d1, d2} {
		waitFor(t, 3*time.Second, "dovecot logs the logins", func() bool { return strings.Count(d.log(), "Login: user=<alice>") >= 2 })
		if log := d.log(); !strings.Contains(log, "rip=127.0.0.2") {
			t.Errorf("dovecot did not see the client's address 127.0.0.2:\n%s", log)
		}
	}
	d1.stop()
	waitFor(t, 3*time.Second, "s1 DOWN", func() bool { return !rt.Server("b", "s1").Healthy() })
	for i := 0; i < 4; i++ {
		if err := imapLogin(t, addr); err != nil {
			t.Fatalf("login %d with one dovecot down: %v", i, err)
		}
	}
}
