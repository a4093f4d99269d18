#!/usr/bin/env bash
# Release helper for the krew plugin `purelb`.
#
#   krew/release.sh package OS ARCH BIN_DIR DIST VERSION
#       Packs BIN_DIR/kubectl-purelb[.exe], BIN_DIR/kubectl_complete-purelb[.exe] and the repository's
#       LICENSE into DIST/kubectl-purelb_VERSION_OS_ARCH.tar.gz (.zip for windows), the layout krew
#       installs from. OS: linux, darwin, windows; ARCH: amd64, arm64.
#   krew/release.sh manifest VERSION DIST [--allow-missing] [--base-url URL]
#       Writes DIST/purelb.yaml from krew/purelb.yaml: spec.version, each platform's uri (URL/VERSION/name,
#       default the project's GitHub release) and the sha256 of each archive found in DIST. Without
#       --allow-missing every platform's archive must be there; with it, a missing one keeps its
#       placeholder. Then validates the result with krew's validate-krew-manifest (structure only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
PLATFORMS="linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64"

die() { printf 'release.sh: %s\n' "$*" >&2; exit 1; }
archive_name() { # VERSION OS ARCH
  local ext=tar.gz
  [ "$2" = windows ] && ext=zip
  printf 'kubectl-purelb_%s_%s_%s.%s' "$1" "$2" "$3" "$ext"
}
sha256_of() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

package() {
  [ $# -eq 5 ] || die "usage: release.sh package OS ARCH BIN_DIR DIST VERSION"
  local os=$1 arch=$2 bin_dir=$3 dist=$4 version=$5 exe=""
  case " $PLATFORMS " in *" $os/$arch "*) ;; *) die "unsupported platform $os/$arch (one of: $PLATFORMS)" ;; esac
  [ "$os" = windows ] && exe=.exe
  local stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' RETURN
  for b in kubectl-purelb kubectl_complete-purelb; do
    [ -f "$bin_dir/$b$exe" ] || die "$bin_dir/$b$exe does not exist (cargo build --release --target ... first)"
    cp "$bin_dir/$b$exe" "$stage/"
  done
  cp "$root/LICENSE" "$stage/LICENSE"
  mkdir -p "$dist"
  local out
  out="$(cd "$dist" && pwd)/$(archive_name "$version" "$os" "$arch")"
  rm -f "$out"
  if [ "$os" = windows ]; then
    if command -v zip >/dev/null; then
      (cd "$stage" && zip -q "$out" ./*)
    else
      (cd "$stage" && python3 -m zipfile -c "$out" ./*)
    fi
  else
    tar -C "$stage" -czf "$out" kubectl-purelb kubectl_complete-purelb LICENSE
  fi
  echo "$out"
}

manifest() {
  [ $# -ge 2 ] || die "usage: release.sh manifest VERSION DIST [--allow-missing] [--base-url URL]"
  local version=$1 dist=$2 allow_missing=0 base="https://github.com/purelb-rs/purelb-rs/releases/download"
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --allow-missing) allow_missing=1 ;;
      --base-url) base=${2:?--base-url needs a URL}; shift ;;
      *) die "unknown option $1" ;;
    esac
    shift
  done
  [[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] || die "VERSION must look like v1.2.3 (krew needs semver with a v)"
  local subst=() os arch name sum
  for p in $PLATFORMS; do
    os=${p%/*} arch=${p#*/}
    name=$(archive_name "$version" "$os" "$arch")
    if [ -f "$dist/$name" ]; then
      sum=$(sha256_of "$dist/$name")
    elif [ "$allow_missing" = 1 ]; then
      sum=""
      echo "release.sh: $name missing: keeping the placeholder sha256" >&2
    else
      die "$dist/$name is missing (package it, or pass --allow-missing)"
    fi
    subst+=("${os}_${arch}=$base/$version/$name=$sum")
  done
  awk -v version="$version" -v subst="${subst[*]}" '
    BEGIN { n = split(subst, s, " "); for (i = 1; i <= n; i++) { split(s[i], f, "="); uri[f[1]] = f[2]; sum[f[1]] = f[3] } }
    /^  version: / { print "  version: " version; next }
    /^    uri: / {
      key = $2; sub(/.*kubectl-purelb_[^_]*_/, "", key); sub(/\.(tar\.gz|zip)$/, "", key)
      current = key; print "    uri: " uri[key]; next
    }
    /^    sha256: / && current != "" && sum[current] != "" { print "    sha256: \"" sum[current] "\""; next }
    { print }
  ' "$here/purelb.yaml" > "$dist/purelb.yaml"
  local tools
  tools=$(bash "$here/build-validator.sh")
  "$tools/validate-krew-manifest" -manifest "$dist/purelb.yaml" -skip-install
  echo "$dist/purelb.yaml"
}

case "${1:-}" in
  package) shift; package "$@" ;;
  manifest) shift; manifest "$@" ;;
  *) die "usage: release.sh package OS ARCH BIN_DIR DIST VERSION | release.sh manifest VERSION DIST [--allow-missing] [--base-url URL]" ;;
esac
