package kube

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseName is the coordination.k8s.io Lease that elects the one replica writing status.
const LeaseName = "waage-status-writer"

// elect runs the election for the status writer until ctx ends: writer tells whether this replica
// writes status now, and onElected runs when it becomes the writer (to write what others missed).
// Every replica serves traffic either way; only status writes wait for the Lease.
func (p *Provider) elect(ctx context.Context, onElected func()) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: p.LeaseNamespace, Name: LeaseName},
		Client:     p.core.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: p.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
			Name:            LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					p.logger().Info("kubernetes: this replica writes status", "identity", p.Identity)
					p.writer.Store(true)
					onElected()
				},
				OnStoppedLeading: func() {
					p.writer.Store(false)
				},
			},
		})
		if err != nil {
			p.logger().Error("kubernetes: status writer election", "err", err)
			return
		}
		le.Run(ctx) // returns when the lease is lost or ctx ends; then stand again
	}
}
