// Package admin serves waage's admin listener (admin.listen): the JSON API that shows and changes
// the running frontends, backends and servers, the live dashboard (static files embedded in the
// binary), and Prometheus metrics at /metrics.
//
// The package reads the running state through Source, which the runtime implements, and keeps no
// state of its own beyond the listener: every answer is built from the servers' atomics at the
// moment it is asked for. Metrics follow the same rule: the data path counts into plain atomics,
// and a custom collector turns them into Prometheus samples only when /metrics is scraped.
package admin

import (
	"errors"
	"net/netip"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/guard"
	"github.com/waage/waage/internal/vrrp"
)

// Source is the running instance as the admin API sees it.
type Source interface {
	// Config is the running configuration.
	Config() *config.Config
	// Backends lists the running backends in configuration order.
	Backends() []Backend
	// Frontends lists the running frontends in configuration order, with their counters.
	Frontends() []Frontend
	// Events is the log of server changes.
	Events() *backend.EventLog
	// SetServerState and SetServerWeight change a server of a backend; an unknown backend or
	// server is an error wrapping ErrNotFound.
	SetServerState(backendName, serverName string, st backend.State) (*backend.Server, error)
	SetServerWeight(backendName, serverName string, weight int) (*backend.Server, error)

	// Deny blocks the sources in p on every frontend for ttl (0: until Undeny), without a
	// reload: POST /api/deny.
	Deny(p netip.Prefix, ttl time.Duration)
	// Undeny lifts a block made by Deny; false if p was not blocked.
	Undeny(p netip.Prefix) bool
	// Denied lists the blocks in force (expired ones are gone).
	Denied() []guard.DenyEntry
	// BusiestSources returns at most n client sources over all frontends, busiest first, with
	// the rates of the last sample.
	BusiestSources(n int) []TopSource
	// Guards returns each frontend's guard by frontend name; the metrics read their refusal
	// counters.
	Guards() map[string]*guard.Guard
	// VRRPStatus returns the state of every VRRP instance, ordered by name.
	VRRPStatus() []vrrp.Status
}

// TopSource is one client source of one frontend, for GET /api/top-sources.
type TopSource struct {
	Frontend string
	guard.SourceStat
}

// ErrNotFound is wrapped by Source's errors for unknown backends and servers (404).
var ErrNotFound = errors.New("not found")

// Backend is a running backend: its servers are the live ones, whose atomics the API and metrics
// read.
type Backend struct {
	Name string
	// Mode is how frontends use the backend: http, tcp or udp, joined with "," when several
	// kinds of frontend use it, empty when none does.
	Mode      string
	Algorithm string
	Servers   []*backend.Server
}

// Frontend is a running frontend and its counters, read at one moment.
type Frontend struct {
	Name string
	Mode string // http, tcp or udp
	// Listen are the configured addresses, Addrs the bound ones (differ with port 0).
	Listen []string
	Addrs  []string
	// Backend is the backend of a tcp or udp frontend without routes; DefaultBackend takes
	// requests no route matches.
	Backend        string
	DefaultBackend string
	Routes         []Route
	Stats          FrontendStats
}

// Route is a frontend's route and the backend it sends to.
type Route struct {
	Name    string
	Backend string
}

// FrontendStats are a frontend's counters.
type FrontendStats struct {
	// ActiveConnections are the open client connections (open flows for udp).
	ActiveConnections int64
	// Connections counts accepted client connections (flows opened for udp).
	Connections uint64
	// Requests counts answered requests (http), proxied connections (tcp) or datagrams from
	// clients (udp).
	Requests uint64
	// Responses counts answers by status class, index 1 = 1xx ... 5 = 5xx (http only).
	Responses [6]uint64
	// BytesIn and BytesOut are body bytes (http) or all payload bytes (tcp, udp) from clients
	// to servers and back.
	BytesIn, BytesOut uint64
	// Duration is the request duration histogram (http only; nil otherwise).
	Duration *backend.HistogramSnapshot
}
