#!/usr/bin/env bash
# Builds the lab's upstream binaries (kube-apiserver, kubectl, etcd) from the Go module proxy at the
# versions pinned in go.mod, into a cache directory keyed by those versions, and prints that directory.
# A cache that already holds all three is reused as it is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k8s=$(awk '$1=="k8s.io/kubernetes"{print $2}' "$here/go.mod")
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$here/go.mod")
cache_root=${PURELB_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/purelb-lab}
out="$cache_root/upstream-k8s-$k8s-etcd-$etcd"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
# One build at a time (two test processes may ask at once); whoever waited finds the cache filled.
mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
flock 9
if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: the Go toolchain is required to build the lab's control plane" >&2; exit 1; }
mkdir -p "$out.tmp"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
ldk8s="-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$k8s" | cut -d. -f2)"
ldk8s="$ldk8s -X k8s.io/client-go/pkg/version.gitVersion=$k8s"
echo "build.sh: building kube-apiserver $k8s, kubectl $k8s and etcd $etcd into $out (first time only)" >&2
go build -trimpath -ldflags "$ldk8s" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
go build -trimpath -ldflags "$ldk8s" -o "$out.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3 >&2
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
