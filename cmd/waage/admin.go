package main

import (
	"net"
	"sync"

	"github.com/waage/waage/internal/admin"
	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// adminAPI is the admin listener of `waage run`: API, dashboard and metrics on admin.listen.
type adminAPI struct {
	d   *daemon
	srv *admin.Server

	moving sync.Mutex // one listener move at a time
	mu     sync.Mutex
	want   config.Admin // the admin section of the latest reload
}

// startAdmin starts the admin listener for the configuration that just started (nothing listens
// without admin.listen). A listener that cannot be opened is logged, not fatal: the frontends
// serve on, and a reload may open it later.
func startAdmin(d *daemon, cfg *config.Config) *adminAPI {
	a := &adminAPI{d: d}
	a.srv = admin.New(admin.Options{
		Source:  d.adminSource(),
		Reload:  func() error { return d.reloadConfig("api") },
		Logger:  d.logger,
		Version: version,
		BGP:     d.rt,
		Listen:  func(addr string) (net.Listener, error) { return d.listen("admin", addr) },
	})
	a.apply(cfg.Admin)
	return a
}

// reloaded follows a configuration that a reload applied: a new token applies to the next
// request, a new admin.listen moves the listener. It runs inside the daemon's reload lock, which
// opening a listener takes too (daemon.listen), so a move happens just after, in the background.
func (a *adminAPI) reloaded(cfg *config.Config) {
	if a == nil {
		return
	}
	a.d.rt.Events().Add(backend.Event{Kind: "reload", Source: "config", Detail: a.d.path})
	if cfg.Admin.Listen == a.srv.Listening() {
		a.apply(cfg.Admin)
		return
	}
	a.mu.Lock()
	a.want = cfg.Admin
	a.mu.Unlock()
	go a.move()
}

// move applies the latest admin section a reload asked for; moves run one at a time, so the last
// reload's address wins.
func (a *adminAPI) move() {
	a.moving.Lock()
	defer a.moving.Unlock()
	a.mu.Lock()
	want := a.want
	a.mu.Unlock()
	a.apply(want)
}

func (a *adminAPI) apply(ac config.Admin) {
	if err := a.srv.Apply(ac); err != nil {
		a.d.logger.Error("admin API not listening", "err", err)
	}
}

// close stops the admin listener.
func (a *adminAPI) close() {
	if a != nil {
		a.srv.Close()
	}
}
