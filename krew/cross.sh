#!/usr/bin/env bash
# Builds kubectl-purelb and kubectl_complete-purelb for the krew platforms this Linux/amd64 machine can
# build and run, and proves each build behaves exactly as the native one:
#   windows/amd64  x86_64-pc-windows-gnu       (Debian mingw-w64), run under Wine
#   linux/arm64    aarch64-unknown-linux-musl  (static; Debian's aarch64 gcc for ring's C), run under qemu-user
# For each: cargo build, krew/release.sh packs the krew archive, krew/release.sh writes the manifest with
# the archives' sha256 (validated by krew's validate-krew-manifest), `krew install --manifest --archive`
# installs it with KREW_OS/KREW_ARCH set to that platform, and the installed programs run a fixed list of
# offline commands (help, version, explain and pools from files, validate on examples/ good and bad,
# completion, a usage error) whose stdout, stderr and exit code must equal the native build's, byte for
# byte (one documented normalisation, below). macOS (x86_64, aarch64) and windows/arm64 cannot be linked
# here (no Apple SDK, no arm64 mingw-w64 in Debian): they are type-checked instead (`cargo check`, every
# crate of the plugin compiled for that target without linking), ring's C compiled by clang against a
# few stub headers that only make its build script pass (the objects are never linked or shipped).
#
#   krew/cross.sh [--release] [NATIVE_BIN_DIR]
#       --release       build the cross targets with the release profile (what a release ships);
#                       default: the dev profile, faster to build (measured; README)
#       NATIVE_BIN_DIR  the native kubectl-purelb to compare with (default: $CARGO_TARGET_DIR/debug,
#                       built here if missing or stale)
#
# Needs: rustup (adds the targets when missing), Go (krew/build-validator.sh), and the Debian packages
# gcc-mingw-w64-x86-64, wine64, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user-static, zip,
# clang-14 (all in .ci/run). Compilers and linkers are set for cargo here, by environment, not in a config file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

die() { printf 'cross.sh: %s\n' "$*" >&2; exit 1; }
usage="usage: krew/cross.sh [--release] [NATIVE_BIN_DIR]"
profile=dev profile_dir=debug
if [ "${1:-}" = --release ]; then profile=release profile_dir=release; shift; fi
[ $# -le 1 ] || die "$usage"
case "${1:-}" in -*) die "$usage" ;; esac
target_dir=${CARGO_TARGET_DIR:-$root/target}
native=${1:-$target_dir/debug}

# Prerequisites, each with what to install.
need() { # COMMAND-OR-PATH PACKAGE
  command -v "$1" >/dev/null || [ -x "$1" ] || die "$1 is missing: apt-get install --no-install-recommends $2 (see .ci/run)"
}
need cargo "rustup (https://rustup.rs)"
need rustup "rustup (https://rustup.rs)"
need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
need aarch64-linux-gnu-gcc "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
need qemu-aarch64-static qemu-user-static
need zip zip
need clang-14 clang-14
wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
wineserver=$(command -v wineserver || echo /usr/lib/wine/wineserver64)
need "$wine" wine64
need "$wineserver" wine64
[ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] || die "runs on linux/amd64 only (it runs windows/amd64 under Wine and linux/arm64 under qemu)"

run_targets="x86_64-pc-windows-gnu aarch64-unknown-linux-musl"
check_targets="x86_64-apple-darwin aarch64-apple-darwin aarch64-pc-windows-gnullvm"
installed=$(rustup target list --installed)
targets=$run_targets
targets="$run_targets $check_targets"
for t in $targets; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t" || die "rustup could not add the $t target"
done

# Cargo's compilers and linkers per target (the host's build scripts keep the host's cc).
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc

version="v$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)"
work=$(mktemp -d)
export WINEPREFIX="$work/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
cleanup() {
  [ -d "$WINEPREFIX" ] && "$wineserver" -k >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "cross.sh: the native build to compare with ($native)"
if [ -z "${1:-}" ]; then cargo build --locked -p kubectl-purelb --bins; fi
for b in kubectl-purelb kubectl_complete-purelb; do [ -x "$native/$b" ] || die "$native/$b is missing (cargo build -p kubectl-purelb)"; done

dist="$work/dist"
bash krew/release.sh package linux amd64 "$native" "$dist" "$version" >/dev/null
declare -A platform_of=([x86_64-pc-windows-gnu]=windows/amd64 [aarch64-unknown-linux-musl]=linux/arm64)
for t in $run_targets; do
  start=$SECONDS
  cargo build --locked --profile "$profile" -p kubectl-purelb --bins --target "$t"
  printf 'cross.sh: %s: cargo build --profile %s: %d s\n' "$t" "$profile" $((SECONDS - start))
  p=${platform_of[$t]}
  bin="$target_dir/$t/$profile_dir"
  exe=""
  [ "${p%/*}" = windows ] && exe=.exe
  for b in kubectl-purelb kubectl_complete-purelb; do
    f="$bin/$b$exe"
    [ -f "$f" ] || die "$f was not built"
    if [ -n "$exe" ]; then
      x86_64-w64-mingw32-objdump -f "$f" | grep -q 'file format pei-x86-64' || die "$f is not a Windows x86-64 executable"
    else
      [ "$(readelf -hW "$f" | sed -n 's/^ *Machine: *//p')" = AArch64 ] || die "$f is not an AArch64 executable"
      if readelf -lW "$f" | grep -q 'program interpreter' || readelf -dW "$f" | grep -q '(NEEDED)'; then die "$f is not static"; fi
    fi
    printf 'cross.sh: %s: %s bytes\n' "$f" "$(stat -c %s "$f")"
  done
  bash krew/release.sh package "${p%/*}" "${p#*/}" "$bin" "$dist" "$version" >/dev/null
done

echo "cross.sh: the manifest for the built archives, checked by krew's validate-krew-manifest"
manifest=$(bash krew/release.sh manifest "$version" "$dist" --allow-missing 2>"$work/manifest.log" | tail -n1) \
  || { cat "$work/manifest.log" >&2; die "release.sh manifest failed"; }
for f in "$dist"/kubectl-purelb_*; do
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  grep -q "sha256: \"$sum\"" "$manifest" || die "$manifest lacks the sha256 of $(basename "$f")"
  printf 'cross.sh: %s %s bytes, sha256 %s in the manifest\n' "$(basename "$f")" "$(stat -c %s "$f")" "$sum"
done

tools=$(bash krew/build-validator.sh)
krew_install() { # OS ARCH: installs that platform's archive into its own KREW_ROOT, prints the root
  local os=$1 arch=$2 ext=tar.gz krew_root="$work/krew-$1-$2"
  [ "$os" = windows ] && ext=zip
  KREW_ROOT="$krew_root" KREW_OS=$os KREW_ARCH=$arch "$tools/krew" install --manifest="$manifest" \
    --archive="$dist/kubectl-purelb_${version}_${os}_${arch}.$ext" </dev/null >"$work/install-$os-$arch.log" 2>&1 \
    || { cat "$work/install-$os-$arch.log" >&2; die "krew install of $os/$arch failed"; }
  [ -f "$krew_root/store/purelb/$version/LICENSE" ] || die "$os/$arch: LICENSE is not among the installed files"
  echo "$krew_root"
}

# The cases, each: expected exit code, then the program (plugin or complete) and its arguments. Run in a
# directory holding a copy of examples/ and two files made here, with relative paths, so every build sees
# the same paths; KUBECONFIG names no file, so nothing reaches for a cluster. Stdout, stderr and the exit
# code must be byte-for-byte the native ones, with one normalisation: in a case marked "os" the
# operating system's own words for an error ("No such file or directory" on Linux, "File not found." in
# Wine) are cut from stderr before comparing, keeping the "(os error N)" code.
cases="$work/cases"
mkdir -p "$cases"
cp -r examples "$cases/examples"
cat >"$cases/nodes.yaml" <<'EOF'
nodes:
- {name: node1, interface: eth0, subnets: [192.0.2.0/24, 2001:db8:0:1::/64]}
- {name: node2, interface: eth0, subnets: [192.0.2.0/24, 2001:db8:0:1::/64]}
- {name: node3, interface: eth1, subnets: [203.0.113.0/24], live: false}
EOF
# The localaddr example with its pool moved out of its subnet: an error validate must report.
sed 's/192\.0\.2\.200-192\.0\.2\.220/198.51.100.200-198.51.100.220/' examples/servicegroup-localaddr.yaml >"$cases/bad-localaddr.yaml"
cmp -s examples/servicegroup-localaddr.yaml "$cases/bad-localaddr.yaml" && die "examples/servicegroup-localaddr.yaml changed: the bad copy equals it"
groups=(--groups examples/servicegroup-default.yaml --groups examples/servicegroup-localaddr.yaml --groups examples/servicegroup-dualstack.yaml)
case_list=(
  "0 plugin --help"
  "0 plugin version --client"
  "0 plugin explain --help"
  "0 plugin explain servicetest -n servicetest -f examples/servicetest.yaml ${groups[*]} --nodes nodes.yaml"
  "0 plugin explain servicetest -n servicetest -f examples/servicetest.yaml ${groups[*]} --nodes nodes.yaml -o json"
  "0 plugin explain -f examples/echoserver-service.yaml ${groups[*]} --nodes nodes.yaml -o wide"
  "0 plugin explain dualstack -f examples/dualstack-service.yaml ${groups[*]} --nodes nodes.yaml -o yaml"
  "0 plugin pools -f examples/servicegroup-localaddr.yaml -f examples/servicegroup-dualstack.yaml -f examples/dualstack-service.yaml"
  "0 plugin validate -f examples/servicegroup-default.yaml -f examples/servicegroup-localaddr.yaml -f examples/servicegroup-dualstack.yaml -f examples/lbnodeagent.yaml"
  "0 plugin validate -f examples/servicegroup-localaddr.yaml"
  "1 plugin validate --strict -f examples/servicegroup-localaddr.yaml"
  "1 plugin validate -f examples/servicegroup-default.yaml -f bad-localaddr.yaml"
  "1os plugin validate -f examples/no-such-file.yaml"
  "2 plugin no-such-command"
  "0 complete sg"
  "0 complete explain -o"
)

# Runs one case with the given programs; writes NAME.out, NAME.err, NAME.rc into OUT_DIR.
run_case() { # OUT_DIR INDEX LAUNCHER PLUGIN COMPLETE WORDS...
  local out=$1 i=$2 launcher=$3 plugin=$4 complete=$5 program
  shift 5
  program=$plugin
  [ "$1" = complete ] && program=$complete
  shift
  local cmd=("$program" "$@")
  [ -n "$launcher" ] && cmd=("$launcher" "${cmd[@]}")
  local rc=0
  (cd "$cases" && KUBECONFIG="$work/no-kubeconfig" NO_COLOR=1 timeout 120 "${cmd[@]}" \
    </dev/null >"$out/$i.out" 2>"$out/$i.err") || rc=$?
  echo "$rc" >"$out/$i.rc"
}
run_all() { # OUT_DIR LAUNCHER PLUGIN COMPLETE
  mkdir -p "$1"
  local i=0 c words
  for c in "${case_list[@]}"; do
    read -r -a words <<<"$c"
    if [ "${words[1]}" = complete ]; then words+=(""); fi  # kubectl passes the word being completed last
    run_case "$1" "$i" "$2" "$3" "$4" "${words[@]:1}"
    if [[ ${words[0]} == *os ]]; then
      sed -i -E 's/: [^:]+ \((os error [0-9]+)\)$/: (\1)/' "$1/$i.err"
    fi
    i=$((i + 1))
  done
}

echo "cross.sh: the native build runs the ${#case_list[@]} cases"
run_all "$work/native" "" "$native/kubectl-purelb" "$native/kubectl_complete-purelb"
i=0
for c in "${case_list[@]}"; do
  want=${c%% *}
  want=${want%os}
  got=$(cat "$work/native/$i.rc")
  [ "$got" = "$want" ] || { cat "$work/native/$i.err" >&2; die "native: '${c#* }' exited $got, expected $want"; }
  [ -s "$work/native/$i.out" ] || [ -s "$work/native/$i.err" ] || die "native: '${c#* }' printed nothing"
  i=$((i + 1))
done

# Wine: its own prefix, with the bcryptprimitives.dll stand-in Debian's Wine 8.0 lacks (krew/wine/).
x86_64-w64-mingw32-gcc -O2 -shared -o "$work/bcryptprimitives.dll" krew/wine/bcryptprimitives.c krew/wine/bcryptprimitives.def -ladvapi32
timeout 300 "$wine" wineboot --init >"$work/wineboot.log" 2>&1 || { cat "$work/wineboot.log" >&2; die "wineboot failed"; }
"$wineserver" -w
[ -d "$WINEPREFIX/drive_c/windows/system32" ] || die "Wine made no prefix in $WINEPREFIX"
cp "$work/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"

failed=0
for p in windows/amd64 linux/arm64; do
  os=${p%/*} arch=${p#*/}
  krew_root=$(krew_install "$os" "$arch")
  store="$krew_root/store/purelb/$version"
  if [ "$os" = windows ]; then
    launcher=$wine plugin="$krew_root/bin/kubectl-purelb.exe" complete="$store/kubectl_complete-purelb.exe"
  else
    launcher=qemu-aarch64-static plugin="$krew_root/bin/kubectl-purelb" complete="$store/kubectl_complete-purelb"
  fi
  [ -e "$plugin" ] || die "krew put no $(basename "$plugin") in $krew_root/bin"
  start=$SECONDS
  run_all "$work/$os-$arch" "$launcher" "$plugin" "$complete"
  i=0 same=0
  for c in "${case_list[@]}"; do
    ok=1
    for s in out err rc; do
      if ! cmp -s "$work/native/$i.$s" "$work/$os-$arch/$i.$s"; then
        ok=0
        printf 'cross.sh: %s differs from native in %s for: %s\n' "$p" "$s" "${c#* }" >&2
        diff -u "$work/native/$i.$s" "$work/$os-$arch/$i.$s" | head -n 20 >&2 || true
      fi
    done
    same=$((same + ok))
    i=$((i + 1))
  done
  printf 'cross.sh: %s (krew-installed, %s): %d/%d cases with the native stdout, stderr and exit code (%d s)\n' \
    "$p" "$launcher" "$same" "${#case_list[@]}" $((SECONDS - start))
  [ "$same" = "${#case_list[@]}" ] || failed=1
done
[ "$failed" = 0 ] || die "a cross build does not behave as the native one"

# macOS and windows/arm64: type-checked only. ring's build script compiles ring's C even for a check;
# without Apple's SDK or an arm64 mingw-w64 libc, clang compiles it freestanding against the stubs below
# (memcpy & co. declared, assert a no-op, TargetConditionals' macros). What is checked is every Rust crate
# of the plugin for that target; nothing of these C objects is linked or shipped.
stubs="$work/stub-include"
mkdir -p "$stubs"
cat >"$stubs/string.h" <<'STUB'
#include <stddef.h>
void *memcpy(void *, const void *, size_t);
void *memmove(void *, const void *, size_t);
void *memset(void *, int, size_t);
int memcmp(const void *, const void *, size_t);
STUB
echo '#define assert(x) ((void)0)' >"$stubs/assert.h"
printf '#define TARGET_OS_MAC 1\n#define TARGET_OS_OSX 1\n#define TARGET_OS_IPHONE 0\n#define TARGET_OS_IOS 0\n' \
  >"$stubs/TargetConditionals.h"
stub_cflags="-ffreestanding -nostdinc -isystem $(clang-14 -print-resource-dir)/include -isystem $stubs"
export CC_x86_64_apple_darwin=clang-14 CFLAGS_x86_64_apple_darwin="$stub_cflags"
export CC_aarch64_apple_darwin=clang-14 CFLAGS_aarch64_apple_darwin="$stub_cflags"
export CC_aarch64_pc_windows_gnullvm=clang-14 CFLAGS_aarch64_pc_windows_gnullvm="--target=aarch64-w64-mingw32 $stub_cflags"
for t in $check_targets; do
  start=$SECONDS
  cargo check --locked -p kubectl-purelb --bins --target "$t" || die "cargo check --target $t failed"
  printf 'cross.sh: %s: cargo check passed (type-checked, not linked: no SDK here), %d s\n' "$t" $((SECONDS - start))
done
echo "cross.sh: windows/amd64 and linux/arm64 built, krew-installed and run like the native build; darwin/amd64, darwin/arm64 and windows/arm64 type-checked"
