package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/kube"
)

// kubeHook joins the Kubernetes provider's translation to the file's config: every apply, from a
// reload of the file or a change in the cluster, runs on both together.
type kubeHook struct {
	file   *config.Config // the file's config last applied
	result *kube.Result   // the provider's last translation
	cancel context.CancelFunc
}

// withKube returns cfg merged with the provider's last translation and remembers cfg for the
// provider's next apply. It runs under d.mu, or before anything else runs.
func (d *daemon) withKube(cfg *config.Config) *config.Config {
	if d.kube == nil {
		return cfg
	}
	d.kube.file = cfg
	return kube.Merge(cfg, d.kube.result)
}

// startKube starts the provider when the config has a kubernetes section; the section is read
// once at start. The file's config serves from the start; the cluster's joins it once the
// watches have synced.
func (d *daemon) startKube(cfg *config.Config) {
	if cfg.Kubernetes == nil {
		return
	}
	k := *cfg.Kubernetes
	if k.Kubeconfig != "" && !filepath.IsAbs(k.Kubeconfig) {
		k.Kubeconfig = filepath.Join(filepath.Dir(d.path), k.Kubeconfig)
	}
	// client-go logs (watch errors such as a missing permission, the Lease) through klog: send
	// them to waage's log.
	klog.SetSlogLogger(d.logger)
	ctx, cancel := context.WithCancel(context.Background())
	d.mu.Lock()
	d.kube = &kubeHook{file: cfg, cancel: cancel}
	d.mu.Unlock()
	p := &kube.Provider{
		Config: k,
		Logger: d.logger,
		// Several replicas elect one status writer with a Lease in their own namespace; outside
		// a cluster (no namespace known) this process writes status alone.
		LeaseNamespace: podNamespace(),
		Identity:       os.Getenv("POD_NAME"),
		Reserved: func() []string {
			d.mu.Lock()
			defer d.mu.Unlock()
			var addrs []string
			for _, f := range d.kube.file.Frontends {
				if f.Mode != "udp" {
					addrs = append(addrs, f.Listen...)
				}
			}
			return addrs
		},
		Apply: func(r *kube.Result) error {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.stopping {
				return nil
			}
			if err := d.rt.Apply(kube.Merge(d.kube.file, r)); err != nil {
				return err
			}
			d.kube.result = r
			return nil
		},
	}
	ready := make(chan error, 1)
	go p.Run(ctx, ready)
	go func() {
		if err, ok := <-ready; ok && err != nil {
			d.logger.Error("kubernetes provider stopped; serving the file's config only", "err", err)
		}
	}()
}

// stopKube stops the provider's watches.
func (d *daemon) stopKube() {
	if d.kube != nil {
		d.kube.cancel()
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
