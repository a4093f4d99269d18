#!/usr/bin/env bash
# Builds the lab's upstream binaries (kube-apiserver, kube-controller-manager, kube-proxy, kubectl, etcd)
# from the Go module proxy at the versions pinned in go.mod, into a cache directory keyed by those
# versions, and prints that directory on stdout (everything else goes to stderr).
# The check is per binary: a cache made before a binary was added to the list (e.g. one holding only
# kube-apiserver, kubectl and etcd) gets just the missing ones built, and nothing already there is rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k8s=$(awk '$1=="k8s.io/kubernetes"{print $2}' "$here/go.mod")
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$here/go.mod")
cache_root=${PURELB_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/purelb-lab}
out="$cache_root/upstream-k8s-$k8s-etcd-$etcd"
# kube-proxy before kube-controller-manager: the lab's data path waits on kube-proxy first.
bins=(kube-apiserver kubectl etcd kube-proxy kube-controller-manager)

missing() {
  local b
  for b in "${bins[@]}"; do
    [ -x "$out/$b" ] || printf '%s\n' "$b"
  done
}

todo=$(missing)
if [ -z "$todo" ]; then
  echo "$out"
  exit 0
fi
# One build at a time (two test processes may ask at once); whoever waited finds the cache filled.
mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
flock 9
todo=$(missing)
if [ -z "$todo" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: the Go toolchain is required to build the lab's control plane ($(echo $todo) missing in $out)" >&2; exit 1; }
mkdir -p "$out"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
ldk8s="-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$k8s" | cut -d. -f2)"
ldk8s="$ldk8s -X k8s.io/client-go/pkg/version.gitVersion=$k8s"
for b in $todo; do
  case "$b" in
    etcd) pkg=go.etcd.io/etcd/server/v3 ldflags="-s -w" version=$etcd ;;
    *) pkg=k8s.io/kubernetes/cmd/$b ldflags=$ldk8s version=$k8s ;;
  esac
  echo "build.sh: building $b $version into $out (once per cache)" >&2
  start=$SECONDS
  # Built beside its final name and renamed into place, so that a reader that skips the lock (the
  # check above) never sees a half-written binary, and an interrupted build leaves nothing that looks done.
  go build -trimpath -ldflags "$ldflags" -o "$out/.$b.tmp" "$pkg" >&2
  mv -f "$out/.$b.tmp" "$out/$b"
  echo "build.sh: built $b in $((SECONDS - start)) s" >&2
done
echo "$out"
