// Package cluster keeps a cluster of waage nodes in step through etcd: the configuration pushed
// with `waage config push` (one key, its history in etcd's revisions), the membership of the
// nodes (a key each under a lease, so a node that dies drops out after the lease's TTL), and the
// changes operators make through any node's admin API (server state and weight, the live deny
// list), which every node applies.
//
// etcd is the control plane only: a node applies what it learns to its runtime, and requests
// never wait for etcd. When etcd cannot be reached a node serves on with the last configuration
// and state it had, kept on disk so that a restart does too, and catches up when etcd answers
// again.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/waage/waage/internal/config"
)

// The keys under the cluster's prefix.
const (
	keyConfig  = "config"   // the configuration: an Envelope
	dirNodes   = "nodes/"   // nodes/NAME: a Member, under the node's lease
	dirServers = "servers/" // servers/BACKEND/SERVER/state and .../weight
	dirDeny    = "deny/"    // deny/CIDR (with _ for /): a denyValue, under a lease when it expires
)

// LeaseTTL is how long a node's membership entry outlives the node's last keep-alive: a killed
// node (or one cut off from etcd) drops out of the others' list, and out of their rate shares,
// after at most this long.
const LeaseTTL = 5 * time.Second

// opTimeout bounds one request to etcd.
const opTimeout = 3 * time.Second

// Envelope is the value of the configuration key: the YAML as pushed and who pushed it when.
type Envelope struct {
	YAML string    `json:"yaml"`
	Time time.Time `json:"time"`
	// By is user@host of the push.
	By string `json:"by,omitempty"`
	// Source is the file pushed, or "rollback to N".
	Source string `json:"source,omitempty"`
	// Prev is the etcd revision of the configuration this one replaced (0: the first), which
	// chains the history together.
	Prev int64 `json:"prev,omitempty"`
}

// Revision is one configuration as etcd stored it: Rev is the key's mod revision.
type Revision struct {
	Rev int64
	Envelope
}

// Name is how errors in the revision's YAML name it: etcd:PREFIXconfig@REV.
func (r *Revision) Name(prefix string) string {
	return fmt.Sprintf("etcd:%s%s@%d", prefix, keyConfig, r.Rev)
}

// Dial returns a client of the etcd cluster e names (defaults applied). It does not wait for a
// connection: the first request does.
func Dial(e config.Etcd) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		DialTimeout: 2 * time.Second,
		// etcd refuses pings more often than every 5s (--grpc-keepalive-min-time); the node's
		// own probe notices a lost quorum sooner anyway.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	}
	secure := e.TLS != nil
	for _, ep := range e.Endpoints {
		if strings.HasPrefix(ep, "https://") {
			secure = true
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	if secure {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if t := e.TLS; t != nil {
			if t.CA != "" {
				pem, err := os.ReadFile(t.CA)
				if err != nil {
					return nil, fmt.Errorf("etcd.tls.ca: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("etcd.tls.ca: no certificate in %s", t.CA)
				}
				tc.RootCAs = pool
			}
			if t.Cert != "" {
				c, err := tls.LoadX509KeyPair(t.Cert, t.Key)
				if err != nil {
					return nil, fmt.Errorf("etcd.tls: %w", err)
				}
				tc.Certificates = []tls.Certificate{c}
			}
		}
		cfg.TLS = tc
	}
	return clientv3.New(cfg)
}

// Push writes yaml as the cluster's newest configuration and returns its revision. It does not
// validate: the caller has (`waage config push` runs what `waage validate` runs). The write is a
// compare-and-swap on the current revision, so two pushes at once cannot lose the history link.
func Push(ctx context.Context, cli *clientv3.Client, prefix string, env Envelope) (int64, error) {
	key := prefix + keyConfig
	for range 5 {
		cur, err := cli.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		env.Prev = 0
		if len(cur.Kvs) > 0 {
			env.Prev = cur.Kvs[0].ModRevision
		}
		if env.Time.IsZero() {
			env.Time = time.Now().UTC()
		}
		data, err := json.Marshal(env)
		if err != nil {
			return 0, err
		}
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", env.Prev)).
			Then(clientv3.OpPut(key, string(data))).
			Commit()
		if err != nil {
			return 0, err
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
	}
	return 0, errors.New("the configuration changed during the push five times in a row; try again")
}

// ErrCompacted is returned (wrapped) for a revision etcd no longer keeps.
var ErrCompacted = errors.New("etcd compacted this revision away")

// Get returns the configuration as of revision rev (0: the newest); nil when there is none.
func Get(ctx context.Context, cli *clientv3.Client, prefix string, rev int64) (*Revision, error) {
	var opts []clientv3.OpOption
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := cli.Get(ctx, prefix+keyConfig, opts...)
	if err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil, fmt.Errorf("revision %d: %w", rev, ErrCompacted)
		}
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	kv := resp.Kvs[0]
	if rev > 0 && kv.ModRevision != rev {
		return nil, fmt.Errorf("revision %d is not a revision of %s%s (the configuration then was revision %d)", rev, prefix, keyConfig, kv.ModRevision)
	}
	r := &Revision{Rev: kv.ModRevision}
	if err := json.Unmarshal(kv.Value, &r.Envelope); err != nil {
		return nil, fmt.Errorf("%s%s@%d: not a waage configuration envelope: %w", prefix, keyConfig, kv.ModRevision, err)
	}
	return r, nil
}

// History returns up to limit configurations, newest first, following each one's link to the
// one it replaced. It stops early, without an error, where etcd compacted the older ones away.
func History(ctx context.Context, cli *clientv3.Client, prefix string, limit int) ([]Revision, error) {
	var out []Revision
	rev := int64(0)
	for len(out) < limit {
		r, err := Get(ctx, cli, prefix, rev)
		if errors.Is(err, ErrCompacted) && len(out) > 0 {
			break
		}
		if err != nil {
			return out, err
		}
		if r == nil {
			break
		}
		out = append(out, *r)
		if r.Prev == 0 {
			break
		}
		rev = r.Prev
	}
	return out, nil
}

// denyKey is the key of a deny entry: the prefix with its slash replaced, so it stays one key
// segment.
func denyKey(prefix string, p netip.Prefix) string {
	return prefix + dirDeny + strings.ReplaceAll(p.String(), "/", "_")
}

// denyValue is the value of a deny entry.
type denyValue struct {
	CIDR string `json:"cidr"`
	// Expires is when the block ends (the key's lease ends then too); nil: until lifted.
	Expires *time.Time `json:"expires,omitempty"`
}

// ListMembers reads the live nodes' membership entries, by name.
func ListMembers(ctx context.Context, cli *clientv3.Client, prefix string) ([]Member, error) {
	resp, err := cli.Get(ctx, prefix+dirNodes, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var m Member
		if json.Unmarshal(kv.Value, &m) == nil && m.Name != "" {
			out = append(out, m)
		}
	}
	return out, nil
}
