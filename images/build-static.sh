#!/usr/bin/env bash
# Builds PureLB daemons as static executables (musl; static-pie on x86_64, static non-PIE on aarch64 as
# the cross gcc links it: no libc or loader needed at run time) for one architecture, checks that they are static and of that architecture, and copies them to OUT_DIR.
# images/build-oci.sh puts them into the images; images/check.sh (part of scripts/test.sh) runs both.
#
#   images/build-static.sh [--arch x86_64|aarch64] OUT_DIR PACKAGE [PACKAGE...]
#   e.g. images/build-static.sh --arch aarch64 /out purelb-allocator purelb-agent
#
# --arch defaults to the machine's own architecture. Needs rustup (it adds the <arch>-unknown-linux-musl
# target when missing), readelf (binutils) and a C compiler for the C and assembly parts of ring: musl-gcc
# (Debian musl-tools) for the machine's own architecture, aarch64-linux-gnu-gcc (Debian
# gcc-aarch64-linux-gnu) when cross-compiling for aarch64, which also links (Rust's musl target brings its
# own libc and start files, so a glibc cross compiler links static musl executables fine).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf 'build-static.sh: %s\n' "$*" >&2; exit 1; }
usage="usage: images/build-static.sh [--arch x86_64|aarch64] OUT_DIR PACKAGE [PACKAGE...]"

host=$(uname -m)
arch=$host
if [ "${1:-}" = --arch ]; then
  [ $# -ge 2 ] || die "$usage"
  arch=$2
  shift 2
fi
[ $# -ge 2 ] || die "$usage"
out=$1
shift

case $arch in
  x86_64) machine='Advanced Micro Devices X86-64' ;;
  aarch64) machine='AArch64' ;;
  *) die "unsupported architecture '$arch' (x86_64 or aarch64)" ;;
esac
target="$arch-unknown-linux-musl"
target_env=${target//-/_}
if [ "$arch" = "$host" ]; then
  cc=musl-gcc
  command -v "$cc" >/dev/null || die "$cc is missing (Debian: apt-get install musl-tools)"
else
  cc="$arch-linux-gnu-gcc"
  command -v "$cc" >/dev/null || die "$cc is missing (Debian: apt-get install gcc-${arch}-linux-gnu)"
  # Cargo's linker for this target only; the host's build scripts keep the host's cc.
  export "CARGO_TARGET_${target_env^^}_LINKER=$cc"
fi
export "CC_${target_env}=$cc"
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" || die "rustup could not add the $target target"
fi

packages=()
for p in "$@"; do packages+=(-p "$p"); done
cargo build --release --locked --target "$target" "${packages[@]}"

target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"
for p in "$@"; do
  bin="$target_dir/$target/release/$p"
  [ -x "$bin" ] || die "$bin was not built"
  got=$(readelf -hW "$bin" | sed -n 's/^ *Machine: *//p')
  [ "$got" = "$machine" ] || die "$bin is for '$got', expected '$machine'"
  # Static: no program interpreter and no shared libraries needed.
  if readelf -lW "$bin" | grep -q 'program interpreter'; then die "$bin asks for a program interpreter"; fi
  if readelf -dW "$bin" | grep -q '(NEEDED)'; then die "$bin needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)"; fi
  install -m 0755 "$bin" "$out/$p"
  printf '%s: static %s executable, %s bytes\n' "$out/$p" "$target" "$(stat -c %s "$out/$p")"
done
