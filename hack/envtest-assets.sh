#!/usr/bin/env bash
# Builds the kube-apiserver, kube-controller-manager and etcd that the
# end-to-end tests run, from the Go module proxy, into a cache folder keyed
# by their versions, and prints that folder (use it as KUBEBUILDER_ASSETS). Builds only what is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/envtest"
cd "$mod"
k8s="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
dir="${SLIMGATE_ENVTEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/slimgate/envtest/k8s-${k8s#v}-etcd-${etcd#v}}"
mkdir -p "$dir"

build() { # build NAME PACKAGE [LDFLAGS]
	local name="$1" pkg="$2" ldflags="${3:-}" start
	if [[ -x "$dir/$name" ]]; then
		return
	fi
	start=$SECONDS
	echo "envtest-assets: building $name from $pkg (first time only; kube-apiserver takes 5-10 minutes on 2 cores)..." >&2
	go build -trimpath -ldflags="-s -w $ldflags" -o "$dir/.$name.tmp" "$pkg"
	mv "$dir/.$name.tmp" "$dir/$name"
	echo "envtest-assets: built $name in $((SECONDS - start))s" >&2
}

build etcd go.etcd.io/etcd/server/v3
minor="${k8s#v1.}"; minor="${minor%%.*}"
kv=k8s.io/component-base/version
versionflags="-X $kv.gitVersion=$k8s -X $kv.gitMajor=1 -X $kv.gitMinor=$minor -X $kv.gitTreeState=clean"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$versionflags"
# The controllers that turn Deployments into ReplicaSets and Pods, for the
# end-to-end tests and the demo (about 8 more minutes the first time).
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$versionflags"

echo "$dir"
