package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/waage/waage/internal/config"
)

// execProber runs a command per check, for what no built-in check can see (a replication lag, a
// queue depth). Exit status 0 is healthy.
type execProber struct {
	argv    []string
	timeout time.Duration // the configured timeout, for the message when the command is killed
}

// maxOutput bounds the output kept of a command: only its first line is reported.
const maxOutput = 4 << 10

func newExecProber(hc *config.HealthCheck) (*execProber, error) {
	if len(hc.Command) == 0 || hc.Command[0] == "" {
		return nil, errors.New("command: is required for exec checks")
	}
	return &execProber{argv: append([]string(nil), hc.Command...), timeout: hc.Timeout.D()}, nil
}

// Probe runs the command in a process group of its own and kills the whole group at the
// deadline, so that a shell script's children die with it.
//
// Its output goes to a pipe of our own rather than through exec.Cmd's copying goroutines, so
// Wait returns when the command exits even if a grandchild still holds the pipe; that
// straggler is then killed with the rest of the group, so checks cannot pile up processes.
// cmd.Cancel kills the group at the deadline and cmd.WaitDelay bounds the wait after that.
func (p *execProber) Probe(ctx context.Context, t Target) error {
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.Canceled) {
			return errCanceled
		}
		return errors.New("timeout before start")
	}
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		host, port = hostOf(t.Address), ""
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start: %v", err)
	}
	defer func() { _ = r.Close() }()

	cmd := exec.CommandContext(ctx, p.argv[0], p.argv[1:]...)
	cmd.Env = append(os.Environ(),
		"WAAGE_SERVER_ADDRESS="+t.Address,
		"WAAGE_SERVER_HOST="+host,
		"WAAGE_SERVER_PORT="+port,
		"WAAGE_SERVER_NAME="+t.Server,
		"WAAGE_BACKEND="+t.Backend,
	)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
	cmd.WaitDelay = time.Second

	start := time.Now()
	err = cmd.Start()
	_ = w.Close() // the child has its copy; ours would keep the reader from seeing EOF
	if err != nil {
		if ctx.Err() != nil {
			return p.ctxError(ctx, start)
		}
		return fmt.Errorf("start: %v", err)
	}

	out := make(chan []byte, 1)
	go func() { out <- readCapped(r, maxOutput) }()

	werr := cmd.Wait()
	_ = killGroup(cmd.Process)
	// Only a process that left the group (setsid) can still hold the pipe now; do not wait
	// for it.
	_ = r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	output := <-out

	if werr == nil {
		return nil
	}
	var ee *exec.ExitError
	isExit := errors.As(werr, &ee)
	if ctx.Err() != nil && (!isExit || !ee.Exited()) {
		return p.ctxError(ctx, start)
	}
	if !isExit {
		return fmt.Errorf("wait: %v", werr)
	}
	if line := firstLine(output, 100); line != "" {
		return fmt.Errorf("%s: %s", ee.Error(), line)
	}
	return errors.New(ee.Error())
}

// ctxError says why a command was stopped: killed at the deadline (naming the timeout, which is
// what the operator configured), or canceled.
func (p *execProber) ctxError(ctx context.Context, start time.Time) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return errCanceled
	}
	if p.timeout > 0 {
		return fmt.Errorf("killed after timeout %v", p.timeout)
	}
	if dl, ok := ctx.Deadline(); ok {
		return fmt.Errorf("killed after timeout %v", max(dl.Sub(start), 0).Round(time.Millisecond))
	}
	return errors.New("killed after timeout")
}

// killGroup kills the process group that p leads.
func killGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	return syscall.Kill(-p.Pid, syscall.SIGKILL)
}

// readCapped reads r to its end (or read error), keeping the first max bytes: the rest is
// drained so that the command never blocks on a full pipe.
func readCapped(r io.Reader, max int) []byte {
	var buf bytes.Buffer
	_, _ = io.Copy(&buf, io.LimitReader(r, int64(max)))
	_, _ = io.Copy(io.Discard, r)
	return buf.Bytes()
}

// firstLine returns the first non-empty line of b, trimmed, at most max bytes.
func firstLine(b []byte, max int) string {
	for line := range bytes.Lines(b) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(line) > max {
			// Cut to max bytes without leaving half a character behind.
			return strings.ToValidUTF8(string(line[:max]), "")
		}
		return string(line)
	}
	return ""
}
