// Package balance chooses a server for a new request or connection. It knows nothing of HTTP or
// TCP: the protocol layer computes a hash key (client address, URI, header, cookie) and passes it
// in, so L7 and L4 share every algorithm.
//
// Every algorithm applies the same candidate rules, so switching algorithms never changes which
// servers may be chosen, only which one is: a candidate is a server whose Usable() is true and
// that is not in the tried list (compared by pointer); primary servers are the candidates while
// at least one primary qualifies, and only then the backups are. Server state (health,
// administrative state, weight, in-flight count, latency) is read with atomics on every Pick, so
// health checkers and operators change it without coordinating with the balancers.
package balance

import (
	"fmt"
	"strings"

	"github.com/waage/waage/internal/backend"
)

// Balancer picks servers for one backend. Implementations are safe for concurrent use.
type Balancer interface {
	// Pick chooses a usable server for new traffic. key is the protocol's hash key, used only by
	// the hashing algorithms. Servers in tried (already attempted for this request) are skipped.
	// Primary servers are preferred; backup servers are used only when no primary is usable.
	// Pick returns nil when no server is usable.
	Pick(key uint64, tried []*backend.Server) *backend.Server
}

// Algorithm names as written in the config.
const (
	// RoundRobin is nginx's smooth weighted round robin: exact shares (weights 1,2,3 give
	// 10/20/30 of 60 picks), interleaved rather than in runs. With equal weights it is plain
	// rotation. The default, because it needs no feedback from the servers.
	RoundRobin = "round_robin"
	// WeightedRoundRobin is the same algorithm as RoundRobin, under the name people look for
	// when they set weights.
	WeightedRoundRobin = "weighted_round_robin"
	// LeastConnections picks the lowest (in-flight+1)/weight, ties shared round robin. For long
	// or uneven requests and connections (IMAP, WebSocket, database), where equal turns pile
	// work onto the slowest server.
	LeastConnections = "least_connections"
	// SourceIPHash is consistent hashing on the client address (the caller passes HashAddr):
	// a client keeps its server without a cookie, which is what L4 and UDP need.
	SourceIPHash = "source_ip_hash"
	// RandomTwoChoices draws two servers and takes the less loaded: almost least_connections'
	// balance in O(1), with no shared counter and no herd onto one idle server.
	RandomTwoChoices = "random_two_choices"
	// LeastResponseTime picks the lowest latency*(in-flight+1)/weight, so a slow server sheds
	// load before its connections pile up; servers with no latency sample yet go first.
	LeastResponseTime = "least_response_time"
	// Hash is consistent hashing on a key the caller chooses (HashString of a URI, header or
	// cookie), for cache affinity: removing a server moves only its own keys.
	Hash = "hash"
	// Maglev is Maglev hashing (Eisenbud et al., NSDI 2016) on the same keys as Hash, or on the
	// client's address and port at L4: a lookup table filled from each server's name, so every
	// node with the same servers picks the same server for a key without sharing state (a UDP
	// flow that ECMP moves to another node keeps its server), with exact shares and O(1) picks.
	Maglev = "maglev"
)

// Algorithms lists every algorithm name New accepts, in documentation order.
var Algorithms = []string{
	RoundRobin, WeightedRoundRobin, LeastConnections, SourceIPHash, RandomTwoChoices,
	LeastResponseTime, Hash, Maglev,
}

// NeedsKey reports whether the algorithm uses the key passed to Pick, so callers can skip
// computing it.
func NeedsKey(algorithm string) bool {
	return algorithm == SourceIPHash || algorithm == Hash || algorithm == Maglev
}

// Options tunes New. The zero value is ready to use.
type Options struct {
	// Rand returns uniformly distributed 64-bit values for random_two_choices. It exists so tests
	// can replay a known sequence; it must be safe for concurrent use. nil uses math/rand/v2's
	// runtime generator, which needs no lock and does not allocate.
	Rand func() uint64
	// MaglevTableSize is the size of maglev's lookup table: a prime larger than the number of
	// servers, ideally 100 times as large or more. 0 is DefaultMaglevTableSize.
	MaglevTableSize int
}

// New returns a Balancer running algorithm over servers. The server list is fixed for the
// Balancer's life (a reload builds a new Balancer over the same *backend.Server values, so
// health, in-flight counts and latency carry over); New copies it, so the caller may reuse the
// slice. An unknown algorithm, a nil server or a server listed twice is an error, because each
// would otherwise silently skew the distribution. An empty list is allowed: Pick returns nil.
func New(algorithm string, servers []*backend.Server, opts Options) (Balancer, error) {
	switch algorithm {
	case RoundRobin, WeightedRoundRobin, LeastConnections, SourceIPHash, Hash, RandomTwoChoices,
		LeastResponseTime, Maglev:
	default:
		return nil, fmt.Errorf("balance: unknown algorithm %q (want one of %s)",
			algorithm, strings.Join(Algorithms, ", "))
	}
	t, err := split(servers)
	if err != nil {
		return nil, fmt.Errorf("balance: %s: %w", algorithm, err)
	}
	switch algorithm {
	case RoundRobin, WeightedRoundRobin:
		return newSWRR(t), nil
	case LeastConnections:
		return &least{tiers: t}, nil
	case LeastResponseTime:
		return &least{tiers: t, byLatency: true}, nil
	case SourceIPHash, Hash:
		return newConsistent(t), nil
	case Maglev:
		b, err := newMaglev(t, opts.MaglevTableSize)
		if err != nil {
			return nil, fmt.Errorf("balance: %s: %w", algorithm, err)
		}
		return b, nil
	default: // RandomTwoChoices
		return newP2C(t, opts.Rand), nil
	}
}

// tiers holds the primary servers at index 0 and the backups at index 1, each in config order.
// Algorithms try tier 0 and fall to tier 1 only when tier 0 has no candidate.
type tiers [2][]*backend.Server

func split(servers []*backend.Server) (tiers, error) {
	var t tiers
	seen := make(map[*backend.Server]bool, len(servers))
	for i, s := range servers {
		if s == nil {
			return t, fmt.Errorf("servers[%d] is nil", i)
		}
		if seen[s] {
			return t, fmt.Errorf("server %q listed twice", s.String())
		}
		seen[s] = true
		if s.Backup {
			t[1] = append(t[1], s)
		} else {
			t[0] = append(t[0], s)
		}
	}
	return t, nil
}

// isTried reports whether s is in tried. tried is short (one entry per retry), so a linear scan
// beats anything that would allocate.
func isTried(s *backend.Server, tried []*backend.Server) bool {
	for _, t := range tried {
		if t == s {
			return true
		}
	}
	return false
}

// anyCandidate reports whether one of servers is a candidate for this Pick.
func anyCandidate(servers []*backend.Server, tried []*backend.Server) bool {
	for _, s := range servers {
		if candidateWeight(s, tried) != 0 {
			return true
		}
	}
	return false
}

// candidateWeight returns the effective weight of s (lowered during slow start) if s is a
// candidate for this Pick, else 0. The weight
// is read again after Usable because an operator may set it to 0 between the two loads; a
// server whose weight reads as 0 is treated as unusable rather than divided by.
func candidateWeight(s *backend.Server, tried []*backend.Server) uint64 {
	if !s.Usable() || isTried(s, tried) {
		return 0
	}
	w := s.EffectiveWeight()
	if w <= 0 {
		return 0
	}
	return uint64(w)
}
