#!/usr/bin/env bash
# Builds MetalLB's controller (go.universe.tf/metallb/controller, the version pinned in go.mod beside this
# script) from the Go module proxy into a cache directory keyed by that version, puts the CRDs it needs
# beside it (crds/, from the module's config/crd/bases: without the conversion-webhook patch the release
# manifest adds) and MetalLB's release manifest (metallb-native.yaml, for the controller's RBAC), and prints
# the directory on stdout (everything else goes to stderr). A cached build is reused as it is. Used by
# lab/benches/side_by_side.rs only, never by the tests or CI.
# Usage: bash lab/metallb/build.sh         -> e.g. ~/.cache/purelb-lab/metallb-v0.15.3
#          (holds controller, crds/*.yaml and metallb-native.yaml)
# Needs: the Go toolchain (go on PATH) and the Go module proxy the first time; flock (util-linux).
# The cache root is $PURELB_LAB_CACHE (default ~/.cache/purelb-lab), shared with lab/upstream/build.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module=go.universe.tf/metallb
version=$(awk -v m="$module" '$1=="require" && $2==m{print $3} $1==m{print $2}' "$here/go.mod" | head -n1)
[ -n "$version" ] || { echo "build.sh: no $module version in $here/go.mod" >&2; exit 1; }
cache_root=${PURELB_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/purelb-lab}
out="$cache_root/metallb-$version"

# The controller is renamed into place last, so its presence means the CRDs are there too.
if [ -x "$out/controller" ]; then
  echo "$out"
  exit 0
fi
# One build at a time (two bench processes may ask at once); whoever waited finds the build there.
mkdir -p "$cache_root"
exec 9>"$cache_root/.metallb-build.lock"
flock 9
if [ -x "$out/controller" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: the Go toolchain is required to build MetalLB $version (install Go; $out/controller is missing)" >&2; exit 1; }
export CGO_ENABLED=0 GOTOOLCHAIN=local
echo "build.sh: building MetalLB's controller $version into $out (once per cache)" >&2
start=$SECONDS
# The module itself, checked against go.sum beside this script.
dir=$(cd "$here" && GOFLAGS=-mod=mod go mod download -json "$module@$version" |
  awk -F'"' '$2=="Dir"{print $4}')
[ -d "$dir/controller" ] || { echo "build.sh: go mod download $module@$version gave no module directory" >&2; exit 1; }
# Built inside a copy of MetalLB's own module (the module cache is read-only), with its go.mod and go.sum,
# so the dependency versions (and any replace directive a later version may add) are MetalLB's: building
# the package from a wrapper module would resolve them anew and ignore replaces.
rm -rf "$out" && mkdir -p "$out"
src="$out/.src.tmp"
cp -r "$dir" "$src"
chmod -R u+w "$src"
(cd "$src" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath \
  -ldflags "-s -w -X go.universe.tf/metallb/internal/version.gitCommit=$version -X go.universe.tf/metallb/internal/version.gitBranch=module-proxy" \
  -o "$out/.controller.tmp" ./controller) >&2
mkdir -p "$out/crds"
cp "$src"/config/crd/bases/*.yaml "$out/crds/"
cp "$src"/config/manifests/metallb-native.yaml "$out/"
rm -rf "$src"
# Renamed into place last: a reader that skips the lock (the check above) never sees a half-done build,
# and an interrupted build leaves nothing that looks done.
mv -f "$out/.controller.tmp" "$out/controller"
echo "build.sh: built MetalLB's controller $version in $((SECONDS - start)) s" >&2
echo "$out"
