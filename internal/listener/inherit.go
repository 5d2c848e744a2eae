package listener

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// EnvFDs is the environment variable through which a process hands its listening sockets to the
// process that replaces it (a binary upgrade): a JSON object from socket name to file descriptor
// number, for example {"tcp 127.0.0.1:80":3,"udp 127.0.0.1:51820":4}. The names are the runtime's
// listen keys, so the new process finds the socket of each address it is configured to listen on.
const EnvFDs = "WAAGE_LISTEN_FDS"

// Dup returns a duplicate of c's socket as a file that is closed on exec and whose Fd method
// leaves the socket non-blocking.
//
// The File methods of package net return a file whose Fd (which os/exec calls on ExtraFiles)
// switches the socket to blocking mode; that flag belongs to the socket, not to the descriptor,
// so the accept loop of the process that keeps serving it would block in the kernel, deaf to
// deadlines and Close. A descriptor duplicated here keeps the flag as it is.
func Dup(c syscall.Conn) (*os.File, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", derr)
	}
	return os.NewFile(uintptr(nfd), "socket"), nil
}

// Handover lists files to pass to a new process in ExtraFiles, and the EnvFDs value that names
// them. The first extra file is descriptor 3 in the child; names are sorted so the order is stable.
func Handover(files map[string]*os.File) (extra []*os.File, env string, err error) {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	fds := make(map[string]int, len(names))
	for i, name := range names {
		extra = append(extra, files[name])
		fds[name] = 3 + i
	}
	b, err := json.Marshal(fds)
	if err != nil {
		return nil, "", err
	}
	return extra, EnvFDs + "=" + string(b), nil
}

// Inherited holds the sockets a process got from the one it replaces, by name, until they are
// taken. A nil *Inherited is an empty set.
type Inherited struct {
	mu    sync.Mutex
	files map[string]*os.File
}

// FromEnv takes the sockets named in EnvFDs and removes the variable from the environment, so
// processes started later (a health check's command, the next upgrade) do not see it. The
// descriptors are marked close-on-exec at once. Without the variable it returns nil.
func FromEnv() (*Inherited, error) {
	v, ok := os.LookupEnv(EnvFDs)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvFDs)
	return parseFDs(v)
}

// NewInherited makes a set of files already open in this process, by name (tests, and a
// hand-over inside one process). The set owns the files.
func NewInherited(files map[string]*os.File) *Inherited {
	in := &Inherited{files: make(map[string]*os.File, len(files))}
	for name, f := range files {
		in.files[name] = f
	}
	return in
}

func parseFDs(v string) (*Inherited, error) {
	var fds map[string]int
	if err := json.Unmarshal([]byte(v), &fds); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvFDs, err)
	}
	in := &Inherited{files: make(map[string]*os.File, len(fds))}
	for name, fd := range fds {
		var st unix.Stat_t
		if fd < 3 || unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			in.Close()
			return nil, fmt.Errorf("%s: %q: descriptor %d is not an open socket", EnvFDs, name, fd)
		}
		syscall.CloseOnExec(fd)
		in.files[name] = os.NewFile(uintptr(fd), name)
	}
	return in, nil
}

// take removes and returns the file named name, or nil.
func (in *Inherited) take(name string) *os.File {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	f := in.files[name]
	delete(in.files, name)
	return f
}

// Listener returns the inherited listening socket named name, or nil when there is none.
func (in *Inherited) Listener(name string) (net.Listener, error) {
	f := in.take(name)
	if f == nil {
		return nil, nil
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("inherited socket %q: %w", name, err)
	}
	return ln, nil
}

// UDP returns the inherited UDP socket named name, or nil when there is none.
func (in *Inherited) UDP(name string) (*net.UDPConn, error) {
	f := in.take(name)
	if f == nil {
		return nil, nil
	}
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("inherited socket %q: %w", name, err)
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("inherited socket %q: not a UDP socket", name)
	}
	return uc, nil
}

// Len is the number of sockets not yet taken.
func (in *Inherited) Len() int {
	if in == nil {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.files)
}

// Close closes the sockets nobody took (addresses the new configuration no longer has) and
// returns their names.
func (in *Inherited) Close() []string {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	var names []string
	for name, f := range in.files {
		f.Close()
		names = append(names, name)
	}
	in.files = nil
	sort.Strings(names)
	return names
}
