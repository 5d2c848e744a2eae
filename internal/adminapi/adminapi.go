// Package adminapi holds the shapes of the admin API's JSON answers: the server (package admin)
// writes them, `waage ctl` and the dashboard read them. Fields are added, never renamed.
package adminapi

import "time"

// Error is every error answer: {"error": "..."}.
type Error struct {
	Error string `json:"error"`
}

// Backends is GET /api/backends.
type Backends struct {
	Backends []Backend `json:"backends"`
}

// Backend is one backend with its servers.
type Backend struct {
	Name      string   `json:"name"`
	Mode      string   `json:"mode"`
	Algorithm string   `json:"algorithm"`
	Servers   []Server `json:"servers"`
}

// Server is one server of a backend: GET /api/backends/B/servers/S and the answers of its
// state and weight changes.
type Server struct {
	Name            string  `json:"name"`
	Backend         string  `json:"backend"`
	Address         string  `json:"address"`
	Backup          bool    `json:"backup"`
	State           string  `json:"state"`  // ready | drain | maintenance
	Health          string  `json:"health"` // up | down (active checks)
	Ejected         bool    `json:"ejected"`
	Usable          bool    `json:"usable"` // takes new traffic now
	Weight          int     `json:"weight"`
	EffectiveWeight float64 `json:"effective_weight"` // lower while slow start ramps
	InFlight        int64   `json:"in_flight"`
	Requests        uint64  `json:"requests"`
	Responses       Status  `json:"responses"`
	Failures        uint64  `json:"failures"`
	ConnectErrors   uint64  `json:"connect_errors"`
	Retries         uint64  `json:"retries"`
	BytesIn         uint64  `json:"bytes_in"`
	BytesOut        uint64  `json:"bytes_out"`
	LatencyMs       float64 `json:"latency_ms"`
	Checks          uint64  `json:"checks"`
	LastCheck       *Check  `json:"last_check"`
}

// Status counts responses by status class.
type Status struct {
	C1xx uint64 `json:"1xx"`
	C2xx uint64 `json:"2xx"`
	C3xx uint64 `json:"3xx"`
	C4xx uint64 `json:"4xx"`
	C5xx uint64 `json:"5xx"`
}

// Check is a server's latest active health check.
type Check struct {
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
	At         time.Time `json:"at"`
	DurationMs float64   `json:"duration_ms"`
}

// Frontends is GET /api/frontends.
type Frontends struct {
	Frontends []Frontend `json:"frontends"`
}

// Frontend is one frontend with its counters and routes.
type Frontend struct {
	Name              string   `json:"name"`
	Mode              string   `json:"mode"`
	Listen            []string `json:"listen"`
	Addresses         []string `json:"addresses"`
	Backend           string   `json:"backend,omitempty"`
	DefaultBackend    string   `json:"default_backend,omitempty"`
	Routes            []Route  `json:"routes"`
	ActiveConnections int64    `json:"active_connections"`
	Connections       uint64   `json:"connections"`
	Requests          uint64   `json:"requests"`
	Responses         *Status  `json:"responses,omitempty"`
	BytesIn           uint64   `json:"bytes_in"`
	BytesOut          uint64   `json:"bytes_out"`
}

// Route is one route of an http frontend.
type Route struct {
	Name    string `json:"name"`
	Backend string `json:"backend"`
}

// Events is GET /api/events.
type Events struct {
	Events []Event `json:"events"`
	// Last is the ID of the newest event: ask for ?since=Last to get only newer ones.
	Last uint64 `json:"last"`
}

// Event is one server change: health, ejection, state or weight.
type Event struct {
	ID      uint64    `json:"id"`
	Time    time.Time `json:"time"`
	Backend string    `json:"backend,omitempty"`
	Server  string    `json:"server,omitempty"`
	Kind    string    `json:"kind"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	Source  string    `json:"source,omitempty"`
}

// Reload is POST /api/reload's answer.
type Reload struct {
	Reloaded bool `json:"reloaded"`
}

// BGP is GET /api/bgp: the speaker, its sessions and prefixes.
type BGP struct {
	// Enabled: the configuration has a bgp section.
	Enabled  bool   `json:"enabled"`
	LocalAS  uint32 `json:"local_as,omitempty"`
	RouterID string `json:"router_id,omitempty"`
	// Announcing is the decision, Reason why ("serving", "drained", "shutting down", "listeners
	// not up", or which tracked backends have no healthy server), Since when it last changed.
	Announcing bool         `json:"announcing"`
	Reason     string       `json:"reason,omitempty"`
	Since      *time.Time   `json:"since,omitempty"`
	Drained    bool         `json:"drained"`
	Prefixes   []BGPPrefix  `json:"prefixes"`
	Peers      []BGPPeer    `json:"peers"`
	Trackers   []BGPTracker `json:"trackers"`
	LastError  string       `json:"last_error,omitempty"`
}

// BGPTracker is one backend the speaker tracks: Healthy while it has a server that can take
// traffic (healthy, not ejected, ready, weight above 0).
type BGPTracker struct {
	Backend string `json:"backend"`
	Healthy bool   `json:"healthy"`
}

// BGPPrefix is one prefix the speaker announces while the node serves.
type BGPPrefix struct {
	Prefix    string `json:"prefix"`
	Announced bool   `json:"announced"`
}

// BGPPeer is one BGP session.
type BGPPeer struct {
	Address string `json:"address"`
	AS      uint32 `json:"as"`
	// State is idle, connect, active, opensent, openconfirm or established.
	State string `json:"state"`
	// Since is when the session came up (established) or went down; null before either.
	Since         *time.Time `json:"since"`
	UptimeSeconds float64    `json:"uptime_seconds"`
	Received      uint64     `json:"received"`
	Accepted      uint64     `json:"accepted"`
	Advertised    uint64     `json:"advertised"`
	LastError     string     `json:"last_error,omitempty"`
}

// Node is GET /api/node and the answer of POST /api/node/drain and /api/node/undrain: the
// whole node drained (the BGP speaker withdraws its routes; the connections it has are served
// on).
type Node struct {
	Drained bool `json:"drained"`
	// Changed: the request changed the state (false: it was already so).
	Changed *bool `json:"changed,omitempty"`
}

// Cluster is GET /api/cluster: this node's view of the etcd cluster.
type Cluster struct {
	Enabled        bool       `json:"enabled"`
	Node           string     `json:"node,omitempty"`
	Prefix         string     `json:"prefix,omitempty"`
	Endpoints      []string   `json:"endpoints,omitempty"`
	Connected      bool       `json:"connected"`
	Since          *time.Time `json:"since,omitempty"`
	ConfigRevision int64      `json:"config_revision"`
	LastError      string     `json:"last_error,omitempty"`
	LastErrorAt    *time.Time `json:"last_error_at,omitempty"`
	LastSync       *time.Time `json:"last_sync,omitempty"`
	Nodes          int        `json:"nodes"`
}

// ClusterNodes is GET /api/nodes.
type ClusterNodes struct {
	Nodes []ClusterNode `json:"nodes"`
}

// ClusterNode is one registered node of the cluster.
type ClusterNode struct {
	Name           string    `json:"name"`
	Admin          string    `json:"admin,omitempty"`
	Version        string    `json:"version"`
	State          string    `json:"state"`
	Started        time.Time `json:"started"`
	ConfigRevision int64     `json:"config_revision"`
	Self           bool      `json:"self"`
}

// DenyEntry is one block of the live deny list.
type DenyEntry struct {
	CIDR string `json:"cidr"`
	// Expires is when the block ends by itself; null: until lifted.
	Expires *time.Time `json:"expires"`
	// RemainingSeconds is the time left, rounded up; null: until lifted.
	RemainingSeconds *int64 `json:"remaining_seconds"`
}

// Denied is GET /api/deny.
type Denied struct {
	Denied []DenyEntry `json:"denied"`
}

// Lifted is DELETE /api/deny's answer.
type Lifted struct {
	CIDR   string `json:"cidr"`
	Lifted bool   `json:"lifted"`
}

// TopSources is GET /api/top-sources.
type TopSources struct {
	Sources []TopSource `json:"sources"`
}

// TopSource is one client source of one frontend.
type TopSource struct {
	Frontend string `json:"frontend"`
	Source   string `json:"source"`
	// Denied: the live deny list blocks the source now.
	Denied          bool   `json:"denied"`
	OpenConnections int64  `json:"open_connections"`
	Connections     uint64 `json:"connections"`
	Requests        uint64 `json:"requests"`
	// Refused are the source's connections refused by the per-source limits (udp: datagrams
	// dropped by packet_rate_per_source).
	Refused uint64 `json:"refused"`
	// Rates per second between the last two samples (every 2 s).
	RequestRate    float64 `json:"request_rate"`
	ConnectionRate float64 `json:"connection_rate"`
}

// VRRP is GET /api/vrrp: the VRRP instances' state.
type VRRP struct {
	Instances []VRRPInstance `json:"instances"`
}

// VRRPInstance is one VRRP instance.
type VRRPInstance struct {
	Name            string `json:"name"`
	Interface       string `json:"interface"`
	VirtualRouterID int    `json:"virtual_router_id"`
	// State is initialize, backup, master or fault (its interface is down).
	State string `json:"state"`
	// Priority is the configured priority, EffectivePriority the advertised one (less the
	// weights of failing trackers).
	Priority          int `json:"priority"`
	EffectivePriority int `json:"effective_priority"`
	// AdvertInterval is this router's; MasterAdvertInterval the master's as learnt from its
	// adverts (null before one was heard).
	AdvertInterval       string  `json:"advert_interval"`
	MasterAdvertInterval *string `json:"master_advert_interval"`
	// MasterAddress is the current master's address, this router's own while master; null
	// when no master is known.
	MasterAddress  *string    `json:"master_address"`
	MasterPriority int        `json:"master_priority"`
	LocalAddress   *string    `json:"local_address"`
	VirtualIPs     []string   `json:"virtual_ips"`
	Transitions    uint64     `json:"transitions"`
	LastTransition *time.Time `json:"last_transition"` // null before the first
	LastReason     string     `json:"last_reason"`
	Trackers       []Tracker  `json:"trackers"`
	AdvertsSent    uint64     `json:"adverts_sent"`
	AdvertsRecv    uint64     `json:"adverts_received"`
	InvalidRecv    uint64     `json:"invalid_received"`
	LastError      string     `json:"last_error,omitempty"`
}

// Tracker is one thing a VRRP instance tracks.
type Tracker struct {
	Kind    string `json:"kind"` // backend or interface
	Name    string `json:"name"`
	Weight  int    `json:"weight"`
	Failing bool   `json:"failing"`
}
