#!/usr/bin/env bash
# What can be checked of the images on a machine without a container engine (part of scripts/test.sh):
#   1. each Dockerfile builds its daemon with images/build-static.sh, runs it as the user deploy/ expects
#      (allocator 65532, agent 0) and uses the image name deploy/ references;
#   2. images/build-static.sh really yields static executables (it checks with readelf);
#   3. each runs in a root filesystem that holds nothing but itself (chroot, as the image's user): no libc,
#      no loader, no /etc — what a distroless static image adds on top is not needed to start.
# Needs root (chroot), readelf (binutils), musl-gcc and rustup (for build-static.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf 'images/check.sh: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (chroot)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check_dockerfile() { # DAEMON UID
  local daemon=$1 uid=$2 file="images/${1#purelb-}.Dockerfile" deploy="deploy/${1#purelb-}.yaml"
  [ -f "$file" ] || die "$file is missing"
  grep -q "images/build-static.sh /out $daemon\$" "$file" || die "$file does not build $daemon with images/build-static.sh"
  grep -q "^USER $uid:$uid\$" "$file" || die "$file does not run as $uid:$uid"
  grep -q "runAsUser: $uid\$" "$deploy" || die "$deploy does not run as uid $uid"
  grep -q "image: ghcr.io/purelb-rs/$daemon:" "$deploy" || die "$deploy does not reference ghcr.io/purelb-rs/$daemon"
  grep -q "^ENTRYPOINT \[\"/usr/local/bin/$daemon\"\]\$" "$file" || die "$file's ENTRYPOINT is not /usr/local/bin/$daemon"
}
check_dockerfile purelb-allocator 65532
check_dockerfile purelb-agent 0

bash images/build-static.sh "$work/out" purelb-allocator purelb-agent

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
for pair in purelb-allocator:65532 purelb-agent:0; do
  daemon=${pair%%:*}
  uid=${pair##*:}
  root="$work/root-$daemon"
  install -D -m 0755 "$work/out/$daemon" "$root/usr/local/bin/$daemon"
  got=$(chroot --userspec="$uid:$uid" "$root" "/usr/local/bin/$daemon" --version) \
    || die "$daemon did not run in an empty root filesystem as uid $uid"
  [ "$got" = "$daemon $version" ] || die "$daemon --version said '$got', expected '$daemon $version'"
  chroot --userspec="$uid:$uid" "$root" "/usr/local/bin/$daemon" --help >/dev/null \
    || die "$daemon --help failed in an empty root filesystem"
  echo "images: $daemon is static and starts alone in an empty root filesystem as uid $uid ($got)"
done
