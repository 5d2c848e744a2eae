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
	m      *acme.Manager
	cancel context.CancelFunc
	done   chan struct{}
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
	a.stop()
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
		run := &acmeRun{m: m, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(run.done)
			m.Run(ctx, func(c *tls.Certificate) {
				if err := st.SetDynamic("acme", c); err != nil {
					log.Error("acme: certificate not served", "err", err)
				}
			})
		}()
		runs = append(runs, run)
	}
	a.runs.Store(&runs)
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
