package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	netv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"github.com/waage/waage/internal/config"
)

// Provider watches the API server and applies what the objects say. It is started once per
// process with Run.
type Provider struct {
	// Config is the kubernetes section of the configuration.
	Config config.Kubernetes
	// Apply gets every new translation; it merges it with the file's config and applies the result
	// (see Merge). An error keeps the running config, is logged, and skips the status write.
	Apply func(*Result) error
	// Logger logs reloads and failures; nil: slog.Default().
	Logger *slog.Logger
	// REST is the API server connection; nil: from Config.Kubeconfig, or in-cluster.
	REST *rest.Config
	// Reserved returns the listen addresses of the file's frontends, whose ports Gateway listeners
	// cannot have; nil: none.
	Reserved func() []string
	// CertDir holds the certificates taken from Secrets; empty: a new temporary directory.
	CertDir string
	// LeaseNamespace, when set, makes this replica write status only while it holds the Lease
	// LeaseName there, so that of several replicas (which all serve) one writes status. Empty:
	// this replica always writes status.
	LeaseNamespace string
	// Identity names this replica in the Lease; default the host name.
	Identity string
	// Debounce is the quiet time after a change before a reload, so a burst of events makes
	// one reload; default 150ms. A steady stream of changes still reloads at least every
	// four Debounce intervals.
	Debounce time.Duration
	// DiscoveryInterval is how often the API server is asked whether the CRDs of route kinds
	// missing at the start were installed since; default 30s.
	DiscoveryInterval time.Duration

	core    kubernetes.Interface
	gw      gwclient.Interface
	listers []listers
	gcs     cache.GenericLister
	// namespaces is the cluster-wide watch of Namespaces, for their labels.
	namespaces cache.GenericLister

	mu       sync.Mutex
	lastFile map[string][]byte
	// writer is true while this replica writes status (always without LeaseNamespace).
	writer atomic.Bool
	// lbLogged is why each Service of type LoadBalancer was not served, as last logged.
	lbLogged map[types.NamespacedName]string
}

// listers are the caches of one watched namespace (or of all).
type listers struct {
	gateways, routes, grants, ingresses, services, slices, secrets cache.GenericLister
	// The watches of route kinds whose CRDs may be missing; nil when they are.
	grpcRoutes, tlsRoutes, tcpRoutes, udpRoutes cache.GenericLister
}

// Merge returns file's config with the translation's frontends and backends added. The file's
// config is not changed.
func Merge(file *config.Config, r *Result) *config.Config {
	if r == nil {
		return file
	}
	c := *file
	c.Frontends = append(slices.Clone(file.Frontends), r.Frontends...)
	c.Backends = append(slices.Clone(file.Backends), r.Backends...)
	c.VRRP = loadBalancerVIPs(file, r)
	return &c
}

func (p *Provider) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.Default()
	}
	return p.Logger
}

// restConfig finds the API server: the given REST config, a kubeconfig file, or the in-cluster
// service account.
func (p *Provider) restConfig() (*rest.Config, error) {
	if p.REST != nil {
		return p.REST, nil
	}
	if p.Config.Kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", p.Config.Kubeconfig)
	}
	return rest.InClusterConfig()
}

// Run watches until ctx ends. It returns after the first translation was applied or failed
// (ready is closed then), or with an error if the API server cannot be reached.
func (p *Provider) Run(ctx context.Context, ready chan<- error) {
	err := p.run(ctx, ready)
	if err != nil && ready != nil {
		ready <- err
	}
}

func (p *Provider) run(ctx context.Context, ready chan<- error) error {
	p.Config = p.Config.WithDefaults()
	rc, err := p.restConfig()
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "waage" // also the field manager of the status waage writes
	}
	if p.core, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	if p.gw, err = gwclient.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	if p.CertDir == "" {
		if p.CertDir, err = os.MkdirTemp("", "waage-kube-certs-"); err != nil {
			return fmt.Errorf("kubernetes: %w", err)
		}
		defer os.RemoveAll(p.CertDir)
	}
	if err := os.MkdirAll(p.CertDir, 0o700); err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	notFound, err := startNotFound()
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	defer notFound.Close()

	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	namespaces := p.Config.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var syncs []cache.InformerSynced
	watch := func(inf cache.SharedIndexInformer, gr string) cache.GenericLister {
		inf.AddEventHandler(handler)
		syncs = append(syncs, inf.HasSynced)
		return cache.NewGenericLister(inf.GetIndexer(), gvr(gr))
	}
	// Watch the route kinds that the cluster has: a watch of a resource without its CRD would
	// never sync. A CRD installed later is found by discover and watched from then on.
	served := p.servedRoutes()
	var missing []string
	for _, r := range optionalRoutes {
		if !served[r] {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		p.logger().Info("kubernetes: these Gateway API resources are not installed and not watched yet", "resources", missing)
	}
	var starts []func()
	for _, ns := range namespaces {
		cf := informers.NewSharedInformerFactoryWithOptions(p.core, 0, informers.WithNamespace(ns))
		gf := gwinformers.NewSharedInformerFactoryWithOptions(p.gw, 0, gwinformers.WithNamespace(ns))
		l := listers{
			gateways:  watch(gf.Gateway().V1().Gateways().Informer(), "gateways"),
			routes:    watch(gf.Gateway().V1().HTTPRoutes().Informer(), "httproutes"),
			grants:    watch(gf.Gateway().V1().ReferenceGrants().Informer(), "referencegrants"),
			services:  watch(cf.Core().V1().Services().Informer(), "services"),
			slices:    watch(cf.Discovery().V1().EndpointSlices().Informer(), "endpointslices"),
			secrets:   watch(cf.Core().V1().Secrets().Informer(), "secrets"),
			ingresses: watch(cf.Networking().V1().Ingresses().Informer(), "ingresses"),
		}
		for _, r := range optionalRoutes {
			if served[r] {
				*l.route(r) = watch(routeInformer(gf, r), r)
			}
		}
		p.listers = append(p.listers, l)
		starts = append(starts, func() { cf.Start(ctx.Done()); gf.Start(ctx.Done()) })
	}
	cluster := gwinformers.NewSharedInformerFactory(p.gw, 0)
	p.gcs = watch(cluster.Gateway().V1().GatewayClasses().Informer(), "gatewayclasses")
	clusterCore := informers.NewSharedInformerFactory(p.core, 0)
	p.namespaces = watch(clusterCore.Core().V1().Namespaces().Informer(), "namespaces")
	starts = append(starts, func() { cluster.Start(ctx.Done()); clusterCore.Start(ctx.Done()) })
	for _, s := range starts {
		s()
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return fmt.Errorf("kubernetes: watches did not sync: %w", ctx.Err())
	}
	p.logger().Info("kubernetes: watching", "namespaces", p.Config.Namespaces, "controller", p.Config.ControllerName, "ingress_class", p.Config.IngressClass)

	debounce := p.Debounce
	if debounce <= 0 {
		debounce = 150 * time.Millisecond
	}
	if p.LeaseNamespace == "" {
		p.writer.Store(true)
	} else {
		if p.Identity == "" {
			p.Identity, _ = os.Hostname()
		}
		go p.elect(ctx, poke)
	}
	p.sync(ctx, notFound.Addr().String())
	if ready != nil {
		close(ready)
	}
	var found chan []string
	if len(missing) > 0 {
		found = make(chan []string)
		go p.discover(ctx, missing, found)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case kinds := <-found:
			// Route kinds whose CRDs were installed meanwhile: watch them in every namespace.
			var syncs []cache.InformerSynced
			for i, ns := range namespaces {
				gf := gwinformers.NewSharedInformerFactoryWithOptions(p.gw, 0, gwinformers.WithNamespace(ns))
				for _, r := range kinds {
					inf := routeInformer(gf, r)
					inf.AddEventHandler(handler)
					syncs = append(syncs, inf.HasSynced)
					*p.listers[i].route(r) = cache.NewGenericLister(inf.GetIndexer(), gvr(r))
				}
				gf.Start(ctx.Done())
			}
			if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
				return nil
			}
			p.logger().Info("kubernetes: Gateway API resources installed since the start are watched now", "resources", kinds)
		}
		// Wait until the events stop for one debounce interval, at most four.
		deadline := time.Now().Add(4 * debounce)
	quiet:
		for time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			case <-time.After(debounce):
				break quiet
			}
		}
		p.sync(ctx, notFound.Addr().String())
	}
}

func gvr(resource string) schema.GroupResource { return schema.GroupResource{Resource: resource} }

// optionalRoutes are the route kinds whose CRDs a cluster may lack (the standard channel of some
// Gateway API releases has none of them but GRPCRoute).
var optionalRoutes = []string{"grpcroutes", "tlsroutes", "tcproutes", "udproutes"}

// routeInformer is the informer of one of optionalRoutes.
func routeInformer(gf gwinformers.SharedInformerFactory, kind string) cache.SharedIndexInformer {
	v1 := gf.Gateway().V1()
	switch kind {
	case "grpcroutes":
		return v1.GRPCRoutes().Informer()
	case "tlsroutes":
		return v1.TLSRoutes().Informer()
	case "tcproutes":
		return v1.TCPRoutes().Informer()
	}
	return v1.UDPRoutes().Informer()
}

// route is the lister field of one of optionalRoutes.
func (l *listers) route(kind string) *cache.GenericLister {
	switch kind {
	case "grpcroutes":
		return &l.grpcRoutes
	case "tlsroutes":
		return &l.tlsRoutes
	case "tcproutes":
		return &l.tcpRoutes
	}
	return &l.udpRoutes
}

// servedRoutes lists the Gateway API resources the API server serves now.
func (p *Provider) servedRoutes() map[string]bool {
	served := map[string]bool{}
	rl, err := p.core.Discovery().ServerResourcesForGroupVersion(gwv1.GroupVersion.String())
	if err != nil {
		p.logger().Warn("kubernetes: listing the Gateway API resources", "err", err)
		return served
	}
	for _, r := range rl.APIResources {
		served[r.Name] = true
	}
	return served
}

// discover looks for the missing route kinds every DiscoveryInterval and sends those that
// appeared to found, until none is missing or ctx ends.
func (p *Provider) discover(ctx context.Context, missing []string, found chan<- []string) {
	every := p.DiscoveryInterval
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for len(missing) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		served := p.servedRoutes()
		var now, still []string
		for _, r := range missing {
			if served[r] {
				now = append(now, r)
			} else {
				still = append(still, r)
			}
		}
		if len(now) == 0 {
			continue
		}
		select {
		case found <- now:
			missing = still
		case <-ctx.Done():
			return
		}
	}
}

// list returns every object of one lister field over the watched namespaces.
func list[T any](ls []listers, field func(listers) cache.GenericLister) []T {
	var out []T
	for _, l := range ls {
		if field(l) == nil {
			continue // not watched
		}
		objs, _ := field(l).List(labels.Everything())
		for _, o := range objs {
			if v, ok := o.(T); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// Objects returns what the watches hold now.
func (p *Provider) objects() Objects {
	var o Objects
	gcs, _ := p.gcs.List(labels.Everything())
	for _, g := range gcs {
		o.GatewayClasses = append(o.GatewayClasses, g.(*gwv1.GatewayClass))
	}
	o.Gateways = list[*gwv1.Gateway](p.listers, func(l listers) cache.GenericLister { return l.gateways })
	o.HTTPRoutes = list[*gwv1.HTTPRoute](p.listers, func(l listers) cache.GenericLister { return l.routes })
	o.ReferenceGrants = list[*gwv1.ReferenceGrant](p.listers, func(l listers) cache.GenericLister { return l.grants })
	o.Ingresses = list[*netv1.Ingress](p.listers, func(l listers) cache.GenericLister { return l.ingresses })
	o.Services = list[*corev1.Service](p.listers, func(l listers) cache.GenericLister { return l.services })
	o.EndpointSlices = list[*discoveryv1.EndpointSlice](p.listers, func(l listers) cache.GenericLister { return l.slices })
	o.Secrets = list[*corev1.Secret](p.listers, func(l listers) cache.GenericLister { return l.secrets })
	o.GRPCRoutes = list[*gwv1.GRPCRoute](p.listers, func(l listers) cache.GenericLister { return l.grpcRoutes })
	o.TLSRoutes = list[*gwv1.TLSRoute](p.listers, func(l listers) cache.GenericLister { return l.tlsRoutes })
	o.TCPRoutes = list[*gwv1.TCPRoute](p.listers, func(l listers) cache.GenericLister { return l.tcpRoutes })
	o.UDPRoutes = list[*gwv1.UDPRoute](p.listers, func(l listers) cache.GenericLister { return l.udpRoutes })
	nss, _ := p.namespaces.List(labels.Everything())
	for _, n := range nss {
		o.Namespaces = append(o.Namespaces, n.(*corev1.Namespace))
	}
	return o
}

// sync translates, writes the certificate files, applies, and writes status.
func (p *Provider) sync(ctx context.Context, notFound string) {
	start := time.Now()
	opts := Options{Kubernetes: p.Config, NotFoundAddress: notFound, CertDir: p.CertDir}
	if p.Reserved != nil {
		opts.Reserved = p.Reserved()
	}
	res := Translate(p.objects(), opts)
	// The documented defaults, as the file loader applies them (the translation leaves them out).
	defaulted := config.Config{Frontends: res.Frontends, Backends: res.Backends}
	defaulted.ApplyDefaults()
	if err := p.writeFiles(res.Files); err != nil {
		p.logger().Error("kubernetes: writing certificates", "err", err)
		return
	}
	if err := p.Apply(&res); err != nil {
		p.logger().Error("kubernetes: the objects' config was refused; the running config stays", "err", err)
		return
	}
	p.logLoadBalancers(res.Status.Services)
	p.logger().Debug("kubernetes: applied", "frontends", len(res.Frontends), "backends", len(res.Backends), "took", time.Since(start).Round(time.Microsecond))
	if !p.writer.Load() {
		return
	}
	if err := p.writeStatus(ctx, &res.Status); err != nil && ctx.Err() == nil {
		p.logger().Warn("kubernetes: writing status", "err", err)
	}
}

// writeFiles writes the certificates whose content changed (atomically, so the certificate
// store never reads half a file) and removes those no longer used.
func (p *Provider) writeFiles(files map[string][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for path, data := range files {
		if old, ok := p.lastFile[path]; ok && bytes.Equal(old, data) {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, os.Rename(tmp, path))
	}
	for path := range p.lastFile {
		if _, ok := files[path]; !ok && filepath.Dir(path) == filepath.Clean(p.CertDir) {
			os.Remove(path)
		}
	}
	p.lastFile = files
	return errors.Join(errs...)
}

// mergeConditions sets want onto have, keeping LastTransitionTime where a condition's status did
// not change, and reports whether anything changed.
func mergeConditions(have *[]metav1.Condition, want []metav1.Condition) bool {
	before := slices.Clone(*have)
	for _, c := range want {
		meta.SetStatusCondition(have, c)
	}
	return !equality.Semantic.DeepEqual(before, *have)
}

// writeStatus writes the status a translation computed where it differs from the objects'.
func (p *Provider) writeStatus(ctx context.Context, st *Status) error {
	var errs []error
	for _, o := range p.objects().GatewayClasses {
		want, ok := st.GatewayClasses[o.Name]
		if !ok {
			continue
		}
		o = o.DeepCopy()
		if mergeConditions(&o.Status.Conditions, want) {
			_, err := p.gw.GatewayV1().GatewayClasses().UpdateStatus(ctx, o, metav1.UpdateOptions{})
			errs = append(errs, err)
		}
	}
	objs := p.objects()
	for _, o := range objs.Gateways {
		want, ok := st.Gateways[nn(o.Namespace, o.Name)]
		if !ok {
			continue
		}
		o = o.DeepCopy()
		changed := mergeConditions(&o.Status.Conditions, want.Conditions)
		if !equality.Semantic.DeepEqual(o.Status.Addresses, want.Addresses) {
			o.Status.Addresses, changed = want.Addresses, true
		}
		var ls []gwv1.ListenerStatus
		for _, wl := range want.Listeners {
			l := gwv1.ListenerStatus{Name: wl.Name}
			for _, hl := range o.Status.Listeners {
				if hl.Name == wl.Name {
					l = *hl.DeepCopy()
				}
			}
			mergeConditions(&l.Conditions, wl.Conditions)
			l.Conditions = slices.DeleteFunc(l.Conditions, func(c metav1.Condition) bool {
				return !slices.ContainsFunc(wl.Conditions, func(w metav1.Condition) bool { return w.Type == c.Type })
			})
			l.SupportedKinds, l.AttachedRoutes = wl.SupportedKinds, wl.AttachedRoutes
			ls = append(ls, l)
		}
		if !equality.Semantic.DeepEqual(o.Status.Listeners, ls) {
			o.Status.Listeners, changed = ls, true
		}
		if changed {
			_, err := p.gw.GatewayV1().Gateways(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
			errs = append(errs, err)
		}
	}
	ctrl := p.Config.ControllerName
	routes := p.gw.GatewayV1()
	errs = append(errs,
		writeRouteStatus(ctx, ctrl, objs.HTTPRoutes, st.HTTPRoutes,
			func(o *gwv1.HTTPRoute) *gwv1.RouteStatus { return &o.Status.RouteStatus },
			func(ctx context.Context, o *gwv1.HTTPRoute) error {
				_, err := routes.HTTPRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
				return err
			}),
		writeRouteStatus(ctx, ctrl, objs.GRPCRoutes, st.GRPCRoutes,
			func(o *gwv1.GRPCRoute) *gwv1.RouteStatus { return &o.Status.RouteStatus },
			func(ctx context.Context, o *gwv1.GRPCRoute) error {
				_, err := routes.GRPCRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
				return err
			}),
		writeRouteStatus(ctx, ctrl, objs.TLSRoutes, st.TLSRoutes,
			func(o *gwv1.TLSRoute) *gwv1.RouteStatus { return &o.Status.RouteStatus },
			func(ctx context.Context, o *gwv1.TLSRoute) error {
				_, err := routes.TLSRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
				return err
			}),
		writeRouteStatus(ctx, ctrl, objs.TCPRoutes, st.TCPRoutes,
			func(o *gwv1.TCPRoute) *gwv1.RouteStatus { return &o.Status.RouteStatus },
			func(ctx context.Context, o *gwv1.TCPRoute) error {
				_, err := routes.TCPRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
				return err
			}),
		writeRouteStatus(ctx, ctrl, objs.UDPRoutes, st.UDPRoutes,
			func(o *gwv1.UDPRoute) *gwv1.RouteStatus { return &o.Status.RouteStatus },
			func(ctx context.Context, o *gwv1.UDPRoute) error {
				_, err := routes.UDPRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
				return err
			}),
	)
	for _, o := range objs.Ingresses {
		want, ok := st.Ingresses[nn(o.Namespace, o.Name)]
		if !ok || equality.Semantic.DeepEqual(o.Status.LoadBalancer, want) {
			continue
		}
		o = o.DeepCopy()
		o.Status.LoadBalancer = want
		_, err := p.core.NetworkingV1().Ingresses(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
		errs = append(errs, err)
	}
	errs = append(errs, p.writeServiceStatus(ctx, objs.Services, st.Services))
	return errors.Join(errs...)
}

// startNotFound starts the loopback server that answers 500 for backendRefs that do not resolve.
func startNotFound() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "backend not found", http.StatusInternalServerError)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	return ln, nil
}
