package runtime

import (
	"context"
	"crypto/tls"
	"sync/atomic"

	"github.com/waage/waage/internal/acme"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/tlsx"
)

// acmeRun is one frontend's ACME manager at work.
type acmeRun struct {
	frontend string
	m        *acme.Manager
	cancel   context.CancelFunc
	done     chan struct{}
	// cert is the last certificate the manager got into the store: the next configuration's
	// store for the frontend starts with it (see seed).
	cert atomic.Pointer[tls.Certificate]
}

// acmeRuns are the running managers. Every plaintext http frontend answers HTTP-01 challenges
// from all of them: the CA asks on port 80, usually another frontend than the one whose
// certificate it is.
type acmeRuns struct {
	runs atomic.Pointer[[]*acmeRun]
}

// http01 is the plaintext frontends' l7.Handler.ACMEHTTP01.
func (a *acmeRuns) http01(token string) (string, bool) {
	if runs := a.runs.Load(); runs != nil {
		for _, r := range *runs {
			if v, ok := r.m.HTTP01(token); ok {
				return v, true
			}
		}
	}
	return "", false
}

// restart stops the running managers and starts one for each frontend of cfg with tls.acme,
// feeding its certificates to the frontend's store. A restart is cheap: a stored certificate
// that is still good is served again without asking the CA.
func (a *acmeRuns) restart(r *Runtime, cfg *config.Config, stores map[string]*tlsx.Store) {
	old := a.runs.Load()
	a.stop() // after this the old managers deliver nothing more, so their cert is final
	seedFrom(old, cfg, stores)
	var runs []*acmeRun
	for _, fe := range cfg.Frontends {
		st := stores[fe.Name]
		if fe.TLS == nil || fe.TLS.ACME == nil || st == nil {
			continue
		}
		log := r.logger.With("frontend", fe.Name)
		m, err := acme.New(fe.TLS.ACME, log)
		if err != nil {
			log.Error("acme: not started", "err", err)
			continue
		}
		m.OnTLSALPN01(st.SetChallenge)
		ctx, cancel := context.WithCancel(context.Background())
		run := &acmeRun{frontend: fe.Name, m: m, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(run.done)
			m.Run(ctx, func(c *tls.Certificate) {
				if err := st.SetDynamic("acme", c); err != nil {
					log.Error("acme: certificate not served", "err", err)
					return
				}
				run.cert.Store(c)
			})
		}()
		runs = append(runs, run)
	}
	a.runs.Store(&runs)
}

// seed puts into the stores of cfg the certificate each frontend's running manager last
// delivered. A reload builds new, empty stores, and the new manager delivers the stored
// certificate only once its goroutine has read the storage: until then the frontend would fail
// every handshake. Apply may call it as soon as the new stores exist, before the new handlers
// take connections; restart calls it too, for the certificates delivered since.
func (a *acmeRuns) seed(cfg *config.Config, stores map[string]*tlsx.Store) {
	seedFrom(a.runs.Load(), cfg, stores)
}

// seedFrom seeds from runs, matched by frontend name. The certificate is the one the frontend
// served up to now, so it stays as good as it was even when the acme settings changed (say a
// domain was added): the new manager replaces it once it has the right one.
func seedFrom(runs *[]*acmeRun, cfg *config.Config, stores map[string]*tlsx.Store) {
	if runs == nil {
		return
	}
	for _, fe := range cfg.Frontends {
		st := stores[fe.Name]
		if fe.TLS == nil || fe.TLS.ACME == nil || st == nil {
			continue
		}
		for _, run := range *runs {
			if c := run.cert.Load(); run.frontend == fe.Name && c != nil {
				// It was accepted by a store already, so this cannot fail.
				st.SetDynamic("acme", c)
			}
		}
	}
}

// stop ends the running managers and waits for them.
func (a *acmeRuns) stop() {
	runs := a.runs.Swap(nil)
	if runs == nil {
		return
	}
	for _, r := range *runs {
		r.cancel()
	}
	for _, r := range *runs {
		<-r.done
	}
}
