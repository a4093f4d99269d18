#!/usr/bin/env bash
# Checks the krew plugin manifest the way krew does, with krew's own tools (built by build-validator.sh):
#   1. krew/purelb.yaml as checked in (placeholder sums) passes validate-krew-manifest;
#   2. its spec.version is the workspace's version;
#   3. an archive packed by release.sh from this build (linux, this machine's arch) gets a manifest from
#      release.sh that passes the validator, and `krew install --manifest --archive` installs it: the
#      plugin runs from krew's bin directory and LICENSE is in the installed files.
# Needs the built binaries (cargo build --bins; scripts/test.sh builds them first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin_dir=${1:-$root/target/debug}
tools=$(bash "$here/build-validator.sh")

"$tools/validate-krew-manifest" -manifest "$here/purelb.yaml" -skip-install

want="v$(awk -F'"' '/^version = /{print $2; exit}' "$root/Cargo.toml")"
got=$(awk '/^  version: /{print $2; exit}' "$here/purelb.yaml")
[ "$got" = "$want" ] || { echo "check.sh: krew/purelb.yaml has version $got, the workspace is $want" >&2; exit 1; }

case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; *) echo "check.sh: no krew platform for $(uname -m); skipping the install check" >&2; exit 0 ;; esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
archive=$(bash "$here/release.sh" package linux "$arch" "$bin_dir" "$work/dist" "$want")
manifest=$(bash "$here/release.sh" manifest "$want" "$work/dist" --allow-missing | tail -n1)
KREW_ROOT="$work/krew" KREW_OS=linux KREW_ARCH="$arch" "$tools/krew" install --manifest="$manifest" --archive="$archive" \
  >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; echo "check.sh: krew install failed" >&2; exit 1; }
[ -f "$work/krew/store/purelb/$want/LICENSE" ] || { echo "check.sh: LICENSE is not among the installed files" >&2; exit 1; }
"$work/krew/bin/kubectl-purelb" version --client | grep -qx "kubectl-purelb ${want#v}" \
  || { echo "check.sh: the installed plugin does not report version ${want#v}" >&2; exit 1; }
echo "krew: manifest valid, $want installs and runs from $(basename "$archive")"
