#!/usr/bin/env bash
# Builds krew's own manifest validator (validate-krew-manifest) and krew itself from the Go module proxy
# at a pinned version, into a cache directory keyed by that version, and prints the directory. A cache
# that already holds both is reused as it is. Used by scripts/test.sh and krew/release.sh.
set -euo pipefail
KREW_VERSION=v0.4.4
cache_root=${PURELB_KREW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/purelb-krew}
out="$cache_root/krew-$KREW_VERSION"
if [ -x "$out/validate-krew-manifest" ] && [ -x "$out/krew" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
flock 9
if [ -x "$out/validate-krew-manifest" ] && [ -x "$out/krew" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build-validator.sh: the Go toolchain is required to build krew's validator" >&2; exit 1; }
echo "build-validator.sh: building validate-krew-manifest and krew $KREW_VERSION into $out (first time only)" >&2
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod GOBIN="$out.tmp"
go install -trimpath -ldflags "-s -w" "sigs.k8s.io/krew/cmd/validate-krew-manifest@$KREW_VERSION" >&2
go install -trimpath -ldflags "-s -w" "sigs.k8s.io/krew/cmd/krew@$KREW_VERSION" >&2
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
