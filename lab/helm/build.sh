#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v4, the version pinned in go.mod beside this script) from the Go module proxy
# into a cache directory keyed by that version, and prints the path of the binary on stdout (everything
# else goes to stderr). A cached binary is reused as it is.
# Usage: bash lab/helm/build.sh            -> e.g. ~/.cache/purelb-lab/helm-v4.3.2/helm
# Needs: the Go toolchain (go on PATH) and the Go module proxy the first time; flock (util-linux).
# The cache root is $PURELB_LAB_CACHE (default ~/.cache/purelb-lab), shared with lab/upstream/build.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1=="require" && $2=="helm.sh/helm/v4"{print $3} $1=="helm.sh/helm/v4"{print $2}' "$here/go.mod" | head -n1)
[ -n "$version" ] || { echo "build.sh: no helm.sh/helm/v4 version in $here/go.mod" >&2; exit 1; }
cache_root=${PURELB_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/purelb-lab}
out="$cache_root/helm-$version"

if [ -x "$out/helm" ]; then
  echo "$out/helm"
  exit 0
fi
# One build at a time (two test processes may ask at once); whoever waited finds the binary there.
mkdir -p "$cache_root"
exec 9>"$cache_root/.helm-build.lock"
flock 9
if [ -x "$out/helm" ]; then
  echo "$out/helm"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: the Go toolchain is required to build helm $version (install Go; $out/helm is missing)" >&2; exit 1; }
mkdir -p "$out"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
echo "build.sh: building helm $version into $out (once per cache)" >&2
start=$SECONDS
# Built beside its final name and renamed into place, so that a reader that skips the lock (the check
# above) never sees a half-written binary, and an interrupted build leaves nothing that looks done.
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
  -o "$out/.helm.tmp" helm.sh/helm/v4/cmd/helm >&2
mv -f "$out/.helm.tmp" "$out/helm"
echo "build.sh: built helm $version in $((SECONDS - start)) s" >&2
echo "$out/helm"
