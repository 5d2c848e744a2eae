package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"k8s.io/klog/v2"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/kube"
)

// kubeHook joins the Kubernetes provider's translation to the file's config: every apply, from a
// reload of the file or a change in the cluster, runs on both together.
type kubeHook struct {
	result  *kube.Result      // the provider's last translation
	section config.Kubernetes // the section the provider runs with
	cancel  context.CancelFunc
	done    chan struct{} // closed when the provider has stopped
}

// withKube returns cfg merged with the provider's last translation. It runs under d.mu; the
// caller sets d.kubeFile to cfg once it is applied.
func (d *daemon) withKube(cfg *config.Config) *config.Config {
	if d.kube == nil {
		return cfg
	}
	return kube.Merge(cfg, d.kube.result)
}

// kubeSection is cfg's kubernetes section as the provider gets it (a relative kubeconfig is
// relative to the config file's folder); nil without one.
func (d *daemon) kubeSection(cfg *config.Config) *config.Kubernetes {
	if cfg.Kubernetes == nil {
		return nil
	}
	k := *cfg.Kubernetes
	if k.Kubeconfig != "" && !filepath.IsAbs(k.Kubeconfig) {
		k.Kubeconfig = filepath.Join(filepath.Dir(d.path), k.Kubeconfig)
	}
	return &k
}

// kubeChangedLocked reports whether cfg's kubernetes section differs from the one the provider
// runs with (or there is a provider and no section, or the other way round). Under d.mu.
func (d *daemon) kubeChangedLocked(cfg *config.Config) bool {
	k := d.kubeSection(cfg)
	if d.kube == nil || k == nil {
		return (d.kube == nil) != (k == nil)
	}
	return !reflect.DeepEqual(*k, d.kube.section)
}

// startKube starts the provider when the config has a kubernetes section. The file's config
// serves from the start; the cluster's joins it once the watches have synced.
func (d *daemon) startKube(cfg *config.Config) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.kubeFile = cfg
	d.startKubeLocked(nil)
}

// startKubeLocked starts a provider for the section of the file's config (d.kubeFile); the
// translation prev (of a provider stopped for a changed section) serves until the new one's
// first. Under d.mu.
func (d *daemon) startKubeLocked(prev *kube.Result) {
	k := d.kubeSection(d.kubeFile)
	if k == nil {
		return
	}
	// client-go logs (watch errors such as a missing permission, the Lease) through klog: send
	// them to waage's log.
	klog.SetSlogLogger(d.logger)
	ctx, cancel := context.WithCancel(context.Background())
	h := &kubeHook{result: prev, section: *k, cancel: cancel, done: make(chan struct{})}
	d.kube = h
	p := &kube.Provider{
		Config: *k,
		Logger: d.logger,
		// Several replicas elect one status writer with a Lease in their own namespace; outside
		// a cluster (no namespace known) this process writes status alone.
		LeaseNamespace: podNamespace(),
		Identity:       os.Getenv("POD_NAME"),
		Reserved: func() []string {
			d.mu.Lock()
			defer d.mu.Unlock()
			var addrs []string
			for _, f := range d.kubeFile.Frontends {
				if f.Mode != "udp" {
					addrs = append(addrs, f.Listen...)
				}
			}
			return addrs
		},
		Apply: func(r *kube.Result) error {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.stopping || d.kube != h {
				return nil // shutting down, or a provider for a newer section took over
			}
			if err := d.rt.Apply(kube.Merge(d.kubeFile, r)); err != nil {
				return err
			}
			h.result = r
			return nil
		},
	}
	ready := make(chan error, 1)
	go func() {
		defer close(h.done)
		p.Run(ctx, ready)
	}()
	go func() {
		if err, ok := <-ready; ok && err != nil {
			d.logger.Error("kubernetes provider stopped; serving the file's config only", "err", err)
		}
	}()
}

// restartKube follows a reload that changed the kubernetes section: the running provider stops
// (its watches, status writing and Lease), and one for the new section starts, its first
// translation replacing the old one's; without a section the cluster's part of the config goes.
// kubeRestart keeps restarts in order.
func (d *daemon) restartKube() {
	d.kubeRestart.Lock()
	defer d.kubeRestart.Unlock()
	d.mu.Lock()
	old := d.kube
	changed := d.kubeChangedLocked(d.kubeFile)
	d.mu.Unlock()
	if !changed {
		return // an earlier restart started the provider this section asks for
	}
	if old != nil {
		old.cancel()
		<-old.done
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping || d.kube != old || old == nil && d.kubeFile.Kubernetes == nil {
		return // shutting down, or the section came and went again
	}
	var prev *kube.Result
	if old != nil {
		prev = old.result
	}
	d.kube = nil
	if d.kubeFile.Kubernetes == nil {
		if err := d.rt.Apply(d.kubeFile); err != nil {
			d.logger.Error("applying the config without the kubernetes section", "err", err)
		}
		d.logger.Info("kubernetes provider stopped: the section was removed")
		return
	}
	d.startKubeLocked(prev)
	d.logger.Info("kubernetes provider started for the changed section")
}

// stopKube stops the provider's watches.
func (d *daemon) stopKube() {
	d.mu.Lock()
	h := d.kube
	d.mu.Unlock()
	if h != nil {
		h.cancel()
	}
}

// podNamespace is the namespace waage runs in: POD_NAMESPACE (the Deployment sets it from the
// downward API), or the service account's; empty outside a cluster.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
