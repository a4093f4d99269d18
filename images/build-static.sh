#!/usr/bin/env bash
# Builds PureLB daemons as static executables (musl, static-pie: no libc or loader needed at run time),
# checks that they are static, and copies them to OUT_DIR. The images' Dockerfiles run exactly this, and
# images/check.sh (part of scripts/test.sh) runs it in CI.
#
#   images/build-static.sh OUT_DIR PACKAGE [PACKAGE...]      e.g. images/build-static.sh /out purelb-agent
#
# Needs rustup (it adds the <arch>-unknown-linux-musl target when missing) and musl-gcc (Debian package
# musl-tools) for the C and assembly parts of ring. Builds for the machine's own architecture; a
# multi-platform `docker buildx` runs it once per platform.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf 'build-static.sh: %s\n' "$*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: images/build-static.sh OUT_DIR PACKAGE [PACKAGE...]"
out=$1
shift

arch=$(uname -m)
target="$arch-unknown-linux-musl"
command -v musl-gcc >/dev/null || die "musl-gcc is missing (Debian: apt-get install musl-tools)"
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" || die "rustup could not add the $target target"
fi
export "CC_${arch}_unknown_linux_musl=musl-gcc"

packages=()
for p in "$@"; do packages+=(-p "$p"); done
cargo build --release --locked --target "$target" "${packages[@]}"

target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"
for p in "$@"; do
  bin="$target_dir/$target/release/$p"
  [ -x "$bin" ] || die "$bin was not built"
  # Static: no program interpreter and no shared libraries needed.
  if readelf -lW "$bin" | grep -q 'program interpreter'; then die "$bin asks for a program interpreter"; fi
  if readelf -dW "$bin" | grep -q '(NEEDED)'; then die "$bin needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)"; fi
  install -m 0755 "$bin" "$out/$p"
  printf '%s: static %s executable, %s bytes\n' "$out/$p" "$target" "$(stat -c %s "$out/$p")"
done
