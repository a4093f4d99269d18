#!/usr/bin/env bash
# Checks the images images/build-oci.sh builds (part of scripts/test.sh), with no container engine:
#   1. deploy/allocator.yaml and deploy/agent.yaml reference exactly ghcr.io/purelb-rs/<daemon>:vVERSION
#      (VERSION: Cargo.toml's), with the user and port the image sets, and `kubectl purelb install
#      --dry-run` prints those names, or the ones --image-registry/--version ask for;
#   2. images/build-oci.sh builds one OCI archive per daemon holding an image index (linux/amd64,
#      linux/arm64), and a second build gives the same digests (reproducible);
#   3. for each platform, skopeo picks that platform's image from the index (as a pulling node would);
#      its config has the user, entrypoint, exposed port, labels, architecture and os; umoci unpacks it;
#      the root filesystem holds nothing but /usr/local/bin/<daemon>, for that architecture; and the
#      entrypoint, started in that root filesystem as the image's user (chroot --userspec), answers
#      --version (the image's version) and --help. arm64 runs under qemu-aarch64-static, started
#      explicitly inside the chroot, so binfmt_misc is not needed.
#
#   images/check.sh
#
# Needs root (chroot, umoci), umoci, skopeo, jq, readelf (binutils), qemu-user-static, cargo, and what
# images/build-oci.sh needs (musl-tools, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf 'images/check.sh: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (chroot, umoci unpack)"
for tool in umoci skopeo jq readelf chroot cargo; do
  command -v "$tool" >/dev/null || die "$tool is missing (.ci/run lists the Debian packages)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

workspace_field() { sed -n "/^\[workspace.package\]/,/^\[/s/^$1 = \"\(.*\)\"$/\1/p" Cargo.toml | head -n 1; }
version=$(workspace_field version)
source_url=$(workspace_field repository)
license=$(workspace_field license)
revision=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then revision="$revision-dirty"; fi
host=$(uname -m)

# What deploy/ says each daemon runs as and listens on: the image must agree.
deploy_field() { # FILE KEY -> the value of the first "KEY: value" line
  sed -n "s/^ *$2: *\(.*\)$/\1/p" "$1" | head -n 1
}
declare -A want_user want_port
for daemon in purelb-allocator purelb-agent; do
  deploy="deploy/${daemon#purelb-}.yaml"
  images=$(sed -n 's/^ *image: *//p' "$deploy")
  [ "$images" = "ghcr.io/purelb-rs/$daemon:v$version" ] \
    || die "$deploy references '$images', expected exactly ghcr.io/purelb-rs/$daemon:v$version"
  uid=$(deploy_field "$deploy" runAsUser)
  gid=$(deploy_field "$deploy" runAsGroup)
  [ -n "$uid" ] || die "$deploy sets no runAsUser"
  want_user[$daemon]="$uid:${gid:-$uid}"
  want_port[$daemon]="$(deploy_field "$deploy" containerPort)/tcp"
done
[ "${want_user[purelb-allocator]}" = 65532:65532 ] || die "the allocator must run as 65532:65532, deploy says ${want_user[purelb-allocator]}"
[ "${want_user[purelb-agent]}" = 0:0 ] || die "the agent must run as 0:0, deploy says ${want_user[purelb-agent]}"

# The plugin installs these names, and rewrites them as asked.
cargo build -q -p kubectl-purelb
plugin="${CARGO_TARGET_DIR:-target}/debug/kubectl-purelb"
plugin_images() { KUBECONFIG=/nonexistent "$plugin" install --dry-run "$@" | sed -n 's/^ *image: *//p' | sort | tr '\n' ' '; }
got=$(plugin_images)
[ "$got" = "ghcr.io/purelb-rs/purelb-agent:v$version ghcr.io/purelb-rs/purelb-allocator:v$version " ] \
  || die "kubectl purelb install --dry-run installs '$got'"
got=$(plugin_images --image-registry registry.example/mirror --version v9.8.7)
[ "$got" = "registry.example/mirror/purelb-agent:v9.8.7 registry.example/mirror/purelb-allocator:v9.8.7 " ] \
  || die "kubectl purelb install --image-registry registry.example/mirror --version v9.8.7 installs '$got'"
echo "images: deploy/ and kubectl purelb install reference ghcr.io/purelb-rs/purelb-{allocator,agent}:v$version"

start=$(date +%s)
bash images/build-oci.sh "$work/oci"
echo "images: build-oci.sh took $(($(date +%s) - start)) s"
index_digest() { tar -xOf "$1" index.json | jq -r '.manifests[0].digest'; }
bash images/build-oci.sh "$work/oci-again" >/dev/null
for daemon in purelb-allocator purelb-agent; do
  a=$(index_digest "$work/oci/$daemon-$version.oci.tar")
  b=$(index_digest "$work/oci-again/$daemon-$version.oci.tar")
  [ "$a" = "$b" ] || die "$daemon: two builds of the same commit gave different images ($a, $b)"
done
echo "images: a second build gives the same index digests (reproducible)"

for daemon in purelb-allocator purelb-agent; do
  archive="$work/oci/$daemon-$version.oci.tar"
  [ -f "$archive" ] || die "build-oci.sh wrote no $archive"
  top=$(tar -xOf "$archive" index.json)
  [ "$(jq -r '.manifests | length' <<<"$top")" = 1 ] || die "$archive holds more than one top-level entry"
  [ "$(jq -r '.manifests[0].mediaType' <<<"$top")" = application/vnd.oci.image.index.v1+json ] \
    || die "$archive holds no image index"
  [ "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' <<<"$top")" = "v$version" ] \
    || die "$archive's index is not tagged v$version"
  platforms=$(skopeo inspect --raw "oci-archive:$archive" | jq -r '[.manifests[].platform | "\(.os)/\(.architecture)"] | sort | join(" ")')
  [ "$platforms" = "linux/amd64 linux/arm64" ] || die "$archive's index holds '$platforms'"

  for arch in x86_64 aarch64; do
    case $arch in x86_64) oarch=amd64 machine='Advanced Micro Devices X86-64' ;; aarch64) oarch=arm64 machine=AArch64 ;; esac
    layout="$work/pick-$daemon-$oarch"
    skopeo copy --quiet --override-os linux --override-arch "$oarch" "oci-archive:$archive" "oci:$layout:img"
    config=$(skopeo inspect --config "oci:$layout:img")
    check() { # JQ-FILTER EXPECTED
      local got
      got=$(jq -r "$1" <<<"$config")
      [ "$got" = "$2" ] || die "$daemon linux/$oarch: $1 is '$got', expected '$2'"
    }
    check .architecture "$oarch"
    check .os linux
    check .config.User "${want_user[$daemon]}"
    check '.config.Entrypoint | join(" ")' "/usr/local/bin/$daemon"
    check '.config.Cmd // [] | length' 0
    check '.config.ExposedPorts | keys | join(" ")' "${want_port[$daemon]}"
    check '.config.Labels["org.opencontainers.image.title"]' "$daemon"
    check '.config.Labels["org.opencontainers.image.source"]' "$source_url"
    check '.config.Labels["org.opencontainers.image.version"]' "$version"
    check '.config.Labels["org.opencontainers.image.licenses"]' "$license"
    check '.config.Labels["org.opencontainers.image.revision"]' "$revision"
    check '.config.Labels["org.opencontainers.image.description"] | length > 20' true

    bundle="$work/bundle-$daemon-$oarch"
    umoci unpack --image "$layout:img" "$bundle"
    root="$bundle/rootfs"
    files=$(cd "$root" && find . ! -type d | sort | tr '\n' ' ')
    [ "$files" = "./usr/local/bin/$daemon " ] || die "$daemon linux/$oarch: the image holds '$files', expected only ./usr/local/bin/$daemon"
    got=$(readelf -hW "$root/usr/local/bin/$daemon" | sed -n 's/^ *Machine: *//p')
    [ "$got" = "$machine" ] || die "$daemon linux/$oarch: the executable is for '$got'"
    size=$(skopeo inspect --raw "oci:$layout:img" | jq '[.layers[].size] | add')

    # The image's own entrypoint and user; a foreign architecture through qemu, copied in after the
    # content check above.
    user=$(jq -r .config.User <<<"$config")
    mapfile -t entry < <(jq -r '.config.Entrypoint[]' <<<"$config")
    if [ "$arch" != "$host" ]; then
      qemu=$(command -v "qemu-$arch-static") || die "qemu-$arch-static is missing (Debian: apt-get install qemu-user-static)"
      install -m 0755 "$qemu" "$root/qemu-$arch-static"
      entry=("/qemu-$arch-static" "${entry[@]}")
    fi
    got=$(chroot --userspec="$user" "$root" "${entry[@]}" --version) \
      || die "$daemon linux/$oarch did not start in its root filesystem as $user"
    [ "$got" = "$daemon $version" ] || die "$daemon linux/$oarch --version said '$got', expected '$daemon $version'"
    help=$(chroot --userspec="$user" "$root" "${entry[@]}" --help) || die "$daemon linux/$oarch --help failed"
    grep -q "^Usage: $daemon" <<<"$help" || die "$daemon linux/$oarch --help printed no usage: $help"
    printf 'images: %s linux/%s: user %s, entrypoint %s, port %s, labels, only the executable (%s bytes compressed); started as %s: %s\n' \
      "$daemon" "$oarch" "$user" "${entry[-1]}" "${want_port[$daemon]}" "$size" "$user" "$got"
  done
  echo "images: $archive: $(stat -c %s "$archive") bytes (both architectures)"
done
