#!/usr/bin/env bash
# The one command that runs every check and test of purelb-rs, failing at the first error:
#   formatting, clippy (warnings are errors), the build of every binary, the krew manifest, the images'
#   static executables, and `cargo test --workspace` (unit tests and the lab's end-to-end tests against a
#   real etcd + kube-apiserver).
# Prerequisite: the lab's upstream binaries, built once by lab/upstream/build.sh (needs Go; so does
# krew/build-validator.sh, which builds krew's manifest validator); .ci/run
# installs everything else a fresh machine needs.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n=== test.sh: %s\n' "$*"; }
fail() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

# Toolchains installed the usual way may not be on a non-login shell's PATH.
for dir in "$HOME/.cargo/bin" /usr/local/go/bin; do
  case ":$PATH:" in *":$dir:"*) ;; *) [ -d "$dir" ] && PATH="$PATH:$dir" ;; esac
done
export PATH

stage "prerequisites"
command -v cargo >/dev/null || fail "cargo is missing (install Rust with rustup)"
cargo fmt --version >/dev/null 2>&1 || fail "rustfmt is missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || fail "clippy is missing: rustup component add clippy"
if [ -z "${PURELB_LAB_BIN_DIR:-}" ]; then
  stage "lab upstream binaries (lab/upstream/build.sh; a first build takes many minutes)"
  PURELB_LAB_BIN_DIR=$(bash lab/upstream/build.sh) \
    || fail "lab/upstream/build.sh failed: the lab needs the Go toolchain (go on PATH) to build etcd and kube-apiserver"
  export PURELB_LAB_BIN_DIR
fi
for program in etcd kube-apiserver kubectl; do
  [ -x "$PURELB_LAB_BIN_DIR/$program" ] || fail "$PURELB_LAB_BIN_DIR/$program is missing"
done
echo "upstream binaries: $PURELB_LAB_BIN_DIR"

stage "cargo fmt --all --check"
cargo fmt --all --check

stage "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

stage "cargo build --workspace --bins"
cargo build --workspace --bins

stage "krew manifest (krew's own validate-krew-manifest and krew install; krew/check.sh)"
bash krew/check.sh target/debug

stage "images: static executables that start alone (images/check.sh)"
bash images/check.sh

stage "core property tests (allocation sequences, random strings; cargo test -p purelb-core proptests)"
cargo test -p purelb-core --lib proptests

stage "cargo test --workspace"
cargo test --workspace

stage "all checks and tests passed"
