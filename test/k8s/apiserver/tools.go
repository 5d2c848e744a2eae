//go:build tools

// Package apiserver pins the kube-apiserver that the Kubernetes tests run against. It is a module of its
// own so that the main module does not depend on k8s.io/kubernetes; scripts/test-deps.sh builds the
// binary from here into a cache folder.
package apiserver

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
