package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/waage/waage/internal/listener"
)

// envReadyFD names the descriptor of the pipe on which a process started by a binary upgrade
// says it is ready (it writes "ready PID\n" and closes it). Its end in the old process reads EOF
// without that line when the new process died first.
const envReadyFD = "WAAGE_READY_FD"

// takeReadyPipe returns the readiness pipe handed over by the process this one replaces, or nil
// when it was started normally. The descriptor is marked close-on-exec at once, so that commands
// started meanwhile (exec health checks) do not hold it open and hide a failed start.
func takeReadyPipe() *os.File {
	v, ok := os.LookupEnv(envReadyFD)
	if !ok {
		return nil
	}
	os.Unsetenv(envReadyFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "upgrade-ready")
}

// upgrade is a binary upgrade under way: the new process, started with the listening sockets,
// and its outcome (nil on done once the new process is ready, else why not).
type upgrade struct {
	cmd   *exec.Cmd
	pid   int
	start time.Time
	done  chan error
}

// startUpgrade starts a new copy of the binary (os.Executable: the file now at the path this
// process was started from, so a binary replaced on disk is the new version) with the same
// arguments and environment, and hands it every listening socket as inherited descriptors.
func (d *daemon) startUpgrade() (*upgrade, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the executable: %w", err)
	}
	socks, err := d.sockets()
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range socks {
			f.Close()
		}
	}()
	extra, fdEnv, err := listener.Handover(socks)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, listener.EnvFDs+"=") && !strings.HasPrefix(kv, envReadyFD+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, fdEnv, fmt.Sprintf("%s=%d", envReadyFD, 3+len(extra)))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = append(extra, w)
	if err := cmd.Start(); err != nil {
		r.Close()
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	u := &upgrade{cmd: cmd, pid: cmd.Process.Pid, start: time.Now(), done: make(chan error, 1)}
	d.logger.Info("upgrade: started a new process with the listening sockets", "pid", cmd.Process.Pid, "binary", exe, "sockets", len(extra))
	go u.wait(r, d.upgradeTimeout)
	return u, nil
}

// wait reads the readiness pipe until the new process says it is ready, dies, or timeout passes
// (then it is killed), and reports on u.done.
func (u *upgrade) wait(r *os.File, timeout time.Duration) {
	defer r.Close()
	r.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(io.LimitReader(r, 64))
	if err == nil && strings.HasPrefix(string(b), "ready ") {
		u.cmd.Process.Release()
		u.done <- nil
		return
	}
	exited := make(chan error, 1)
	go func() { exited <- u.cmd.Wait() }()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		u.cmd.Process.Kill()
		<-exited
		u.done <- fmt.Errorf("the new process (pid %d) was not ready within %s; killed it", u.pid, timeout)
		return
	}
	// The pipe closed without the line: the process is exiting (or closed it by mistake).
	var werr error
	select {
	case werr = <-exited:
	case <-time.After(5 * time.Second):
		u.cmd.Process.Kill()
		werr = <-exited
	}
	if werr == nil {
		werr = errors.New("exit status 0")
	}
	u.done <- fmt.Errorf("the new process (pid %d) ended before it was ready (%v); its log says why", u.pid, werr)
}

// abort stops the new process when this one shuts down during an upgrade: stop means stop. One
// that is not ready yet ends at once (SIGTERM's default action, before it handles signals); one
// that just became ready drains like this one. It is a child of this process and never reaped
// here once released, so its PID cannot have been reused.
func (u *upgrade) abort() {
	syscall.Kill(u.pid, syscall.SIGTERM)
}

// signalReady tells the process this one replaces that it serves: that one stops accepting then.
func signalReady(f *os.File) error {
	defer f.Close()
	_, err := fmt.Fprintf(f, "ready %d\n", os.Getpid())
	return err
}

// writePidfile replaces the pid file with this process's PID, by rename, so that a reader never
// sees a partial file and `waage upgrade` sees every rewrite as a new file (a failed upgrade
// rewrites it with the same PID).
func writePidfile(path string) error {
	if path == "" {
		return nil
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// removePidfile removes the pid file at exit, unless it names another process (the one that took
// over in an upgrade).
func removePidfile(path string) {
	if path == "" {
		return
	}
	if pid, err := readPidfile(path); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}

func readPidfile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: not a process ID: %q", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// cmdUpgrade is `waage upgrade`: it sends SIGUSR2 to a running waage, and with -pidfile waits for
// the outcome (the pid file names the new process, or is rewritten with the old one's PID when
// the upgrade failed).
func cmdUpgrade(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("waage upgrade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pidFlag := fs.Int("pid", 0, "process ID of the running waage (sends the signal and returns)")
	pidfile := fs.String("pidfile", "", "the pid file the running waage writes (waage run -pidfile); waits for the outcome")
	timeout := fs.Duration("timeout", 60*time.Second, "with -pidfile: how long to wait for the new process")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*pidFlag == 0) == (*pidfile == "") {
		fmt.Fprintln(stderr, "waage upgrade: give -pid PID or -pidfile FILE")
		return 2
	}
	pid := *pidFlag
	var before os.FileInfo
	if *pidfile != "" {
		var err error
		if before, err = os.Stat(*pidfile); err == nil {
			pid, err = readPidfile(*pidfile)
		}
		if err != nil {
			fmt.Fprintln(stderr, "waage upgrade:", err)
			return 1
		}
	}
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		fmt.Fprintf(stderr, "waage upgrade: signal process %d: %v\n", pid, err)
		return 1
	}
	if *pidfile == "" {
		fmt.Fprintf(stdout, "sent SIGUSR2 to process %d; its log tells the outcome\n", pid)
		return 0
	}
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		fi, err := os.Stat(*pidfile)
		if err != nil || os.SameFile(fi, before) {
			if syscall.Kill(pid, 0) == syscall.ESRCH {
				fmt.Fprintf(stderr, "waage upgrade: process %d exited and no new process wrote %s\n", pid, *pidfile)
				return 1
			}
			continue
		}
		npid, err := readPidfile(*pidfile)
		if err != nil {
			continue
		}
		if npid == pid {
			fmt.Fprintf(stderr, "waage upgrade: the upgrade failed; process %d keeps serving (its log says why)\n", pid)
			return 1
		}
		fmt.Fprintf(stdout, "upgraded: process %d took over from %d\n", npid, pid)
		return 0
	}
	fmt.Fprintf(stderr, "waage upgrade: no outcome within %s; see the log of process %d\n", *timeout, pid)
	return 1
}
