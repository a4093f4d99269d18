# syntax=docker/dockerfile:1
# ghcr.io/purelb-rs/purelb-allocator: the allocator (deploy/allocator.yaml). Build from the repository root:
#   docker buildx build -f images/allocator.Dockerfile -t ghcr.io/purelb-rs/purelb-allocator:v0.1.0 .
# A static executable (musl; images/build-static.sh, which images/check.sh runs in CI) on distroless
# static: no shell, no libc. Runs as the non-root user 65532 (deploy/allocator.yaml's runAsUser) with no
# capabilities on a read-only root filesystem: it writes nothing to disk.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    bash images/build-static.sh /out purelb-allocator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/purelb-allocator /usr/local/bin/purelb-allocator
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/purelb-allocator"]
