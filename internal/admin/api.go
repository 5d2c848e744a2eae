package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/waage/waage/internal/adminapi"
	"github.com/waage/waage/internal/backend"
)

// maxWeight is the largest weight, as the configuration allows it.
const maxWeight = 1000

// maxBody bounds request bodies of the API.
const maxBody = 64 << 10

func (s *Server) routes(mux *http.ServeMux, metrics http.Handler) {
	mux.HandleFunc("/", s.serveDashboard)
	mux.Handle("/metrics", s.read(http.MethodGet, metrics.ServeHTTP))
	mux.Handle("/api/", s.read(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	}))
	mux.Handle("/api/backends", s.read(http.MethodGet, s.getBackends))
	mux.Handle("/api/backends/{backend}", s.read(http.MethodGet, s.getBackend))
	mux.Handle("/api/backends/{backend}/servers/{server}", s.read(http.MethodGet, s.getServer))
	mux.HandleFunc("/api/backends/{backend}/servers/{server}/{action}", s.serverAction)
	mux.Handle("/api/frontends", s.read(http.MethodGet, s.getFrontends))
	mux.Handle("/api/config", s.read(http.MethodGet, s.getConfig))
	mux.Handle("/api/events", s.read(http.MethodGet, s.getEvents))
	mux.HandleFunc("/api/reload", s.postReload)
	mux.HandleFunc("/api/deny", s.deny)
	mux.Handle("/api/top-sources", s.read(http.MethodGet, s.getTopSources))
	mux.Handle("/api/vrrp", s.read(http.MethodGet, s.getVRRP))
	s.clusterRoutes(mux)
	mux.Handle("/api/bgp", s.read(http.MethodGet, s.getBGP))
	mux.Handle("/api/node", s.read(http.MethodGet, s.getNode))
	mux.HandleFunc("/api/node/{action}", s.nodeAction)
}

// read wraps a read-only endpoint: one method (HEAD goes with GET), read access.
func (s *Server) read(method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowMethod(w, r, method) || !s.authorize(w, r, accessRead) {
			return
		}
		h(w, r)
	})
}

// allowMethod answers 405 for any other method than want (and HEAD for GET).
func allowMethod(w http.ResponseWriter, r *http.Request, want string) bool {
	if r.Method == want || want == http.MethodGet && r.Method == http.MethodHead {
		return true
	}
	allow := want
	if want == http.MethodGet {
		allow = "GET, HEAD"
	}
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+allow)
	return false
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, adminapi.Error{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<redacted>" stays readable; the answers are never HTML
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		enc.Encode(adminapi.Error{Error: "encoding the answer failed: " + err.Error()})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func statusOf(c *[6]uint64) adminapi.Status {
	return adminapi.Status{C1xx: c[1], C2xx: c[2], C3xx: c[3], C4xx: c[4], C5xx: c[5]}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func serverOf(s *backend.Server) adminapi.Server {
	var resp [6]uint64
	for i := range resp {
		resp[i] = s.Responses[i].Load()
	}
	out := adminapi.Server{
		Name:            s.Name,
		Backend:         s.Backend,
		Address:         s.Address,
		Backup:          s.Backup,
		State:           s.State().String(),
		Health:          "up",
		Ejected:         s.Ejected(),
		Usable:          s.Usable(),
		Weight:          s.Weight(),
		EffectiveWeight: float64(s.EffectiveWeight()) / backend.WeightScale,
		InFlight:        s.InFlight(),
		Requests:        s.Requests.Load(),
		Responses:       statusOf(&resp),
		Failures:        s.Failures.Load(),
		ConnectErrors:   s.ConnectErrors.Load(),
		Retries:         s.Retries.Load(),
		BytesIn:         s.BytesIn.Load(),
		BytesOut:        s.BytesOut.Load(),
		LatencyMs:       ms(s.Latency()),
		Checks:          s.Checks.Load(),
	}
	if !s.Healthy() {
		out.Health = "down"
	}
	if c := s.LastCheck(); c != nil {
		out.LastCheck = &adminapi.Check{OK: c.Err == "", Error: c.Err, At: c.At, DurationMs: ms(c.Duration)}
	}
	return out
}

func backendOf(b Backend) adminapi.Backend {
	out := adminapi.Backend{Name: b.Name, Mode: b.Mode, Algorithm: b.Algorithm, Servers: make([]adminapi.Server, 0, len(b.Servers))}
	for _, s := range b.Servers {
		out.Servers = append(out.Servers, serverOf(s))
	}
	return out
}

func (s *Server) getBackends(w http.ResponseWriter, r *http.Request) {
	bs := s.opts.Source.Backends()
	out := adminapi.Backends{Backends: make([]adminapi.Backend, 0, len(bs))}
	for _, b := range bs {
		out.Backends = append(out.Backends, backendOf(b))
	}
	writeJSON(w, http.StatusOK, out)
}

// findBackend returns the named running backend, or answers 404.
func (s *Server) findBackend(w http.ResponseWriter, name string) (Backend, bool) {
	for _, b := range s.opts.Source.Backends() {
		if b.Name == name {
			return b, true
		}
	}
	writeError(w, http.StatusNotFound, "unknown backend "+strconv.Quote(name))
	return Backend{}, false
}

func (s *Server) getBackend(w http.ResponseWriter, r *http.Request) {
	if b, ok := s.findBackend(w, r.PathValue("backend")); ok {
		writeJSON(w, http.StatusOK, backendOf(b))
	}
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request) {
	b, ok := s.findBackend(w, r.PathValue("backend"))
	if !ok {
		return
	}
	name := r.PathValue("server")
	for _, srv := range b.Servers {
		if srv.Name == name {
			writeJSON(w, http.StatusOK, serverOf(srv))
			return
		}
	}
	writeError(w, http.StatusNotFound, "backend "+strconv.Quote(b.Name)+" has no server "+strconv.Quote(name))
}

// serverAction serves POST .../drain, .../ready, .../maintenance and PUT .../weight.
func (s *Server) serverAction(w http.ResponseWriter, r *http.Request) {
	bName, sName, action := r.PathValue("backend"), r.PathValue("server"), r.PathValue("action")
	var st backend.State
	switch action {
	case "drain", "ready", "maintenance":
		st, _ = backend.ParseState(action)
		if !allowMethod(w, r, http.MethodPost) {
			return
		}
	case "weight":
		if !allowMethod(w, r, http.MethodPut) {
			return
		}
	default:
		if !s.authorize(w, r, accessRead) {
			return
		}
		writeError(w, http.StatusNotFound, "unknown action "+strconv.Quote(action)+": want drain, ready, maintenance or weight")
		return
	}
	if !s.authorize(w, r, accessWrite) {
		return
	}
	var srv *backend.Server
	var err error
	if action == "weight" {
		var weight int
		if weight, err = readWeight(r); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		srv, err = s.opts.Source.SetServerWeight(bName, sName, weight)
	} else {
		srv, err = s.opts.Source.SetServerState(bName, sName, st)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case err != nil:
		writeError(w, http.StatusConflict, err.Error())
	default:
		writeJSON(w, http.StatusOK, serverOf(srv))
	}
}

// readWeight reads {"weight": N}: exactly that field, an integer from 0 to maxWeight.
func readWeight(r *http.Request) (int, error) {
	var body struct {
		Weight *json.RawMessage `json:"weight"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return 0, errors.New(`body: want {"weight": N}: ` + err.Error())
	}
	if dec.More() {
		return 0, errors.New(`body: want one JSON object {"weight": N}`)
	}
	if body.Weight == nil {
		return 0, errors.New(`body: "weight" is missing; want {"weight": N}`)
	}
	raw := string(*body.Weight)
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 || n > maxWeight {
		return 0, errors.New("weight must be an integer from 0 to " + strconv.Itoa(maxWeight) + ", got " + raw)
	}
	return n, nil
}

func (s *Server) getFrontends(w http.ResponseWriter, r *http.Request) {
	fes := s.opts.Source.Frontends()
	out := adminapi.Frontends{Frontends: make([]adminapi.Frontend, 0, len(fes))}
	for _, f := range fes {
		fj := adminapi.Frontend{
			Name: f.Name, Mode: f.Mode, Listen: nonNil(f.Listen), Addresses: nonNil(f.Addrs),
			Backend: f.Backend, DefaultBackend: f.DefaultBackend, Routes: []adminapi.Route{},
			ActiveConnections: f.Stats.ActiveConnections, Connections: f.Stats.Connections,
			Requests: f.Stats.Requests, BytesIn: f.Stats.BytesIn, BytesOut: f.Stats.BytesOut,
		}
		if f.Mode == "http" {
			st := statusOf(&f.Stats.Responses)
			fj.Responses = &st
		}
		for _, rt := range f.Routes {
			fj.Routes = append(fj.Routes, adminapi.Route(rt))
		}
		out.Frontends = append(out.Frontends, fj)
	}
	writeJSON(w, http.StatusOK, out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// getConfig answers the running configuration with secrets redacted: JSON, or YAML with
// ?format=yaml.
func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	cfg := s.opts.Source.Config()
	if cfg == nil {
		writeError(w, http.StatusServiceUnavailable, "no configuration is running yet")
		return
	}
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		v, err := configJSON(cfg)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, v)
	case "yaml":
		b, err := configYAML(cfg)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b)
	default:
		writeError(w, http.StatusBadRequest, "format "+strconv.Quote(f)+": want json or yaml")
	}
}

// getEvents answers the latest events, oldest first: ?since=ID for those after ID, ?limit=N for
// at most the newest N.
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since uint64
	limit := 0
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since: want an event id, got "+strconv.Quote(v))
			return
		}
		since = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "limit: want a number >= 0, got "+strconv.Quote(v))
			return
		}
		limit = n
	}
	log := s.opts.Source.Events()
	evs := log.Since(since, limit)
	out := adminapi.Events{Events: make([]adminapi.Event, 0, len(evs)), Last: log.Last()}
	for _, e := range evs {
		out.Events = append(out.Events, adminapi.Event{
			ID: e.ID, Time: e.Time, Backend: e.Backend, Server: e.Server, Kind: e.Kind,
			From: e.From, To: e.To, Detail: e.Detail, Source: e.Source,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// postReload loads the configuration file again: 200 when it runs, 422 with the errors when the
// file was refused (the running configuration stays), 409 when another reload is in progress.
func (s *Server) postReload(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, http.MethodPost) || !s.authorize(w, r, accessWrite) {
		return
	}
	if s.opts.Reload == nil {
		writeError(w, http.StatusNotImplemented, "this instance cannot reload through the API")
		return
	}
	if !s.reloadMu.TryLock() {
		writeError(w, http.StatusConflict, "a reload through the API is already in progress")
		return
	}
	defer s.reloadMu.Unlock()
	if err := s.opts.Reload(); err != nil {
		writeError(w, http.StatusUnprocessableEntity, "reload refused; the running configuration stays: "+strings.TrimSpace(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, adminapi.Reload{Reloaded: true})
}
