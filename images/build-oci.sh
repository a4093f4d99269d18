#!/usr/bin/env bash
# Builds the two PureLB images, ghcr.io/purelb-rs/purelb-allocator and ghcr.io/purelb-rs/purelb-agent,
# without a container engine or daemon: one OCI archive per daemon holding an image index with a
# linux/amd64 and a linux/arm64 image. Each image is FROM scratch with a single layer holding nothing but
# the static executable (images/build-static.sh) at /usr/local/bin/<daemon>: a static-pie musl executable
# needs no libc, loader, /etc or CA bundle (the Kubernetes client trusts the service account's ca.crt).
#
#   images/build-oci.sh OUT_DIR [VERSION]
#   -> OUT_DIR/purelb-allocator-VERSION.oci.tar, OUT_DIR/purelb-agent-VERSION.oci.tar (tag vVERSION inside)
#
# VERSION defaults to the workspace version in Cargo.toml, which the executables report; a VERSION must be
# that version, optionally with a pre-release or build suffix (0.1.0-rc.1). Publish with
#   skopeo copy --all oci-archive:OUT_DIR/purelb-agent-0.1.0.oci.tar docker://ghcr.io/purelb-rs/purelb-agent:v0.1.0
# The images are reproducible: every timestamp is the last commit's time (or SOURCE_DATE_EPOCH).
# Needs git, umoci (the images), skopeo (the index and the archive; Debian skopeo), jq, sha256sum, plus what
# images/build-static.sh needs for both architectures (musl-tools; gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross on an x86_64 machine). Root, because umoci unpack keeps file owners.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf 'build-oci.sh: %s\n' "$*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: images/build-oci.sh OUT_DIR [VERSION]"
out=$1
for tool in git umoci skopeo jq sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install umoci skopeo jq git coreutils)"
done

workspace_field() { sed -n "/^\[workspace.package\]/,/^\[/s/^$1 = \"\(.*\)\"$/\1/p" Cargo.toml | head -n 1; }
crate_version=$(workspace_field version)
source_url=$(workspace_field repository)
license=$(workspace_field license)
[ -n "$crate_version" ] && [ -n "$source_url" ] && [ -n "$license" ] \
  || die "Cargo.toml's [workspace.package] lacks version, repository or license"
version=${2:-$crate_version}
version=${version#v}
case $version in
  "$crate_version" | "$crate_version"-* | "$crate_version"+*) ;;
  *) die "version $version is not Cargo.toml's $crate_version (the executables say $crate_version): bump the workspace version" ;;
esac
revision=$(git rev-parse HEAD) || die "not a git checkout: the images' revision label needs the commit"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then revision="$revision-dirty"; fi
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

daemons=(purelb-allocator purelb-agent)
arches=(x86_64 aarch64)
for arch in "${arches[@]}"; do
  bash images/build-static.sh --arch "$arch" "$work/bin/$arch" "${daemons[@]}"
done

oci_arch() { case $1 in x86_64) echo amd64 ;; aarch64) echo arm64 ;; esac; }

# DAEMON -> user, port, description (deploy/<name>.yaml sets the same user and port; images/check.sh
# compares them).
image_user() { case $1 in purelb-allocator) echo 65532:65532 ;; purelb-agent) echo 0:0 ;; esac; }
image_port() { case $1 in purelb-allocator) echo 9090/tcp ;; purelb-agent) echo 9091/tcp ;; esac; }
image_description() {
  case $1 in
    purelb-allocator) echo "PureLB allocator: picks LoadBalancer Service addresses from ServiceGroup pools" ;;
    purelb-agent) echo "PureLB node agent: puts LoadBalancer Service addresses on the right interface of the right node" ;;
  esac
}

mkdir -p "$out"
for daemon in "${daemons[@]}"; do
  layout="$work/layout-$daemon"
  umoci init --layout "$layout"
  labels=(
    "org.opencontainers.image.title=$daemon"
    "org.opencontainers.image.description=$(image_description "$daemon")"
    "org.opencontainers.image.source=$source_url"
    "org.opencontainers.image.version=$version"
    "org.opencontainers.image.licenses=$license"
    "org.opencontainers.image.revision=$revision"
    "org.opencontainers.image.created=$created"
  )
  label_args=()
  for l in "${labels[@]}"; do label_args+=(--config.label "$l"); done
  entries=()
  for arch in "${arches[@]}"; do
    tag=$(oci_arch "$arch")
    bundle="$work/bundle-$daemon-$tag"
    umoci new --image "$layout:$tag"
    umoci unpack --image "$layout:$tag" "$bundle"
    install -D -m 0755 "$work/bin/$arch/$daemon" "$bundle/rootfs/usr/local/bin/$daemon"
    find "$bundle/rootfs" -exec touch -h -d "@$epoch" {} +
    umoci repack --image "$layout:$tag" --history.created "$created" --history.author "images/build-oci.sh" \
      --history.created_by "images/build-oci.sh: $daemon ($arch) at /usr/local/bin/$daemon" "$bundle"
    umoci config --image "$layout:$tag" --no-history --created "$created" --os linux --architecture "$tag" \
      --config.user "$(image_user "$daemon")" --config.entrypoint "/usr/local/bin/$daemon" \
      --config.exposedports "$(image_port "$daemon")" "${label_args[@]}"
    entries+=("$(jq -c --arg tag "$tag" '.manifests[]
      | select(.annotations["org.opencontainers.image.ref.name"] == $tag)
      | del(.annotations) + {platform: {architecture: $tag, os: "linux"}}' "$layout/index.json")")
  done
  # umoci has no image index: write one (the OCI image-spec's index, both platforms, the labels as
  # annotations, which registries show for an index) and tag it vVERSION; skopeo copy --all then checks
  # and archives it with exactly the blobs it references.
  printf '%s\n' "${labels[@]}" | jq -R 'capture("^(?<key>[^=]+)=(?<value>.*)$")' | jq -s 'from_entries' \
    >"$work/annotations.json"
  printf '%s\n' "${entries[@]}" | jq -cs --slurpfile a "$work/annotations.json" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: ., annotations: $a[0]}' \
    | tr -d '\n' >"$work/index-blob.json"
  digest=$(sha256sum "$work/index-blob.json" | cut -d' ' -f1)
  size=$(stat -c %s "$work/index-blob.json")
  cp "$work/index-blob.json" "$layout/blobs/sha256/$digest"
  jq -c --arg d "sha256:$digest" --argjson s "$size" --arg ref "v$version" \
    '.manifests += [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s,
      annotations: {"org.opencontainers.image.ref.name": $ref}}]' "$layout/index.json" >"$work/index.json"
  mv "$work/index.json" "$layout/index.json"
  archive="$out/$daemon-$version.oci.tar"
  rm -f "$archive"
  skopeo copy --quiet --all "oci:$layout:v$version" "oci-archive:$archive:v$version"
  printf '%s: %s:v%s (index sha256:%s; linux/amd64, linux/arm64), %s bytes\n' \
    "$archive" "ghcr.io/purelb-rs/$daemon" "$version" "$digest" "$(stat -c %s "$archive")"
done
