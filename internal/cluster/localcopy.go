package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/waage/waage/internal/config"
)

// The local copy is the last cluster configuration a node applied, in its state directory, so
// that a node that starts while etcd is unreachable serves what the cluster last told it.

// localCopy is the file's content.
type localCopy struct {
	Prefix   string   `json:"prefix"`
	Revision int64    `json:"revision"`
	Envelope Envelope `json:"envelope"`
}

// LocalCopyPath is the file of the local copy for e (defaults applied): one per prefix, so
// nodes of two clusters can share a state directory.
func LocalCopyPath(e config.Etcd) string {
	name := strings.Trim(strings.ReplaceAll(e.Prefix, "/", "-"), "-")
	if name == "" {
		name = "root"
	}
	return filepath.Join(e.StateDir, "cluster-"+name+".json")
}

// SaveLocalCopy writes r as the local copy, atomically (a new file renamed over the old one).
func SaveLocalCopy(e config.Etcd, r *Revision) error {
	data, err := json.MarshalIndent(localCopy{Prefix: e.Prefix, Revision: r.Rev, Envelope: r.Envelope}, "", "  ")
	if err != nil {
		return err
	}
	path := LocalCopyPath(e)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cluster-*.tmp")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// LoadLocalCopy reads the local copy; nil without one.
func LoadLocalCopy(e config.Etcd) (*Revision, error) {
	path := LocalCopyPath(e)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var lc localCopy
	if err := json.Unmarshal(data, &lc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if lc.Prefix != e.Prefix {
		return nil, fmt.Errorf("%s is the copy of %s, not %s", path, lc.Prefix, e.Prefix)
	}
	return &Revision{Rev: lc.Revision, Envelope: lc.Envelope}, nil
}
