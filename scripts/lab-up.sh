#!/usr/bin/env bash
# Brings up a PureLB playground on this machine and keeps it running until Ctrl-C: a real etcd and
# kube-apiserver, three nodes and a BGP router (BIRD) as network namespaces on a LAN bridge, PureLB
# installed with `kubectl purelb install`, the allocator and one agent per node, the `default`
# ServiceGroup and the seed's echoserver Service (see `purelb-lab up`, lab/src/bin/purelb-lab.rs).
# Needs root (network namespaces, apt-get), Rust and Go. Usage: sudo bash scripts/lab-up.sh
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n=== lab-up.sh: %s\n' "$*"; }
fail() { printf 'lab-up.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (the lab's nodes are network namespaces): sudo bash scripts/lab-up.sh"

# Toolchains installed the usual way (also the invoking user's, under sudo) may not be on root's PATH.
dirs=("$HOME/.cargo/bin" /usr/local/go/bin)
if [ -n "${SUDO_USER:-}" ]; then
  user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  dirs+=("$user_home/.cargo/bin" "$user_home/go/bin")
  [ -n "${RUSTUP_HOME:-}" ] || [ ! -d "$user_home/.rustup" ] || export RUSTUP_HOME="$user_home/.rustup"
fi
for dir in "${dirs[@]}"; do
  case ":$PATH:" in *":$dir:"*) ;; *) [ -d "$dir" ] && PATH="$PATH:$dir" ;; esac
done
export PATH

# The Debian packages: the one list, in .ci/run (the CI installer), read rather than repeated here.
packages=$(sed -n 's/^APT_PACKAGES=(\(.*\))$/\1/p' .ci/run)
[ -n "$packages" ] || fail "could not read APT_PACKAGES from .ci/run"
read -r -a APT_PACKAGES <<<"$packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  stage "Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

command -v go >/dev/null || fail "the Go toolchain is missing (the lab builds etcd and kube-apiserver with it)"
command -v cargo >/dev/null || fail "the Rust toolchain is missing (cargo not on PATH; install it with rustup)"

if [ -z "${PURELB_LAB_BIN_DIR:-}" ]; then
  stage "lab upstream binaries (lab/upstream/build.sh; a first build takes several minutes)"
  PURELB_LAB_BIN_DIR=$(bash lab/upstream/build.sh) || fail "lab/upstream/build.sh failed"
  export PURELB_LAB_BIN_DIR
fi

stage "cargo build --release --bins"
cargo build --release --bins

stage "target/release/purelb-lab up (Ctrl-C stops the lab and removes its namespaces)"
exec target/release/purelb-lab up
