package health

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

func TestExecProbe(t *testing.T) {
	for _, prog := range []string{"sh", "true", "sleep"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("exec checks need %s: %v", prog, err)
		}
	}
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")

	tests := []struct {
		name    string
		command []string
		timeout time.Duration
		want    string
		within  time.Duration // how long the check may take
	}{
		{"true", []string{"true"}, time.Second, "", time.Second},
		{"false", []string{"false"}, time.Second, "exit status 1", time.Second},
		{"exit with output", []string{"sh", "-c", "echo boom; exit 2"}, time.Second, "exit status 2: boom", time.Second},
		{"first line only", []string{"sh", "-c", "printf '\\n  first  \\nsecond\\n' >&2; exit 3"}, time.Second, "exit status 3: first", time.Second},
		{"long line cut", []string{"sh", "-c", "printf '%0200d' 0; exit 4"}, time.Second, "exit status 4: " + strings.Repeat("0", 100), time.Second},
		{"address", []string{"sh", "-c", `test "$WAAGE_SERVER_ADDRESS" = 127.0.0.1:1234`}, time.Second, "", time.Second},
		{"host", []string{"sh", "-c", `test "$WAAGE_SERVER_HOST" = 127.0.0.1`}, time.Second, "", time.Second},
		{"port", []string{"sh", "-c", `test "$WAAGE_SERVER_PORT" = 1234`}, time.Second, "", time.Second},
		{"names", []string{"sh", "-c", `test "$WAAGE_SERVER_NAME/$WAAGE_BACKEND" = s1/be`}, time.Second, "", time.Second},
		{"inherited environment", []string{"sh", "-c", `test -n "$PATH"`}, time.Second, "", time.Second},
		{"not found", []string{"/nonexistent/check"}, time.Second, "start: ", time.Second},
		{"killed at timeout", []string{"sh", "-c", "sleep 30"}, 300 * time.Millisecond, "killed after timeout 300ms", 300*time.Millisecond + slack},
		{"silent sleeper killed", []string{"sleep", "30"}, 300 * time.Millisecond, "killed after timeout 300ms", 300*time.Millisecond + slack},
		{"grandchild holds stdout", []string{"sh", "-c", "sleep 30 & echo $! >" + pidFile + "; echo x"}, 5 * time.Second, "", 2 * time.Second},
		{"lots of output", []string{"sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done; exit 5"}, 5 * time.Second, "exit status 5: 0123", 5 * time.Second},
	}
	// The group returns when all its parallel subtests are done.
	t.Run("group", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				hc := &config.HealthCheck{Type: "exec", Command: tt.command}
				err, took := runProbe(t, hc, "127.0.0.1:1234", tt.timeout)
				checkVerdict(t, err, tt.want)
				if took > tt.within {
					t.Errorf("took %v, want at most %v", took, tt.within)
				}
			})
		}
	})

	t.Run("grandchild killed", func(t *testing.T) {
		// The straggler that kept stdout open went with its process group.
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pid := strings.TrimSpace(string(b))
		deadline := time.Now().Add(2 * time.Second)
		for {
			stat, err := os.ReadFile("/proc/" + pid + "/stat")
			// Gone, or a zombie waiting for its reaper (init, or the test's subreaper).
			if err != nil || strings.Contains(string(stat), ") Z ") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("grandchild %s still running: %s", pid, stat)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
