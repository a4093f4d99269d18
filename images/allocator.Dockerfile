# syntax=docker/dockerfile:1
# ghcr.io/purelb-rs/purelb-allocator: the allocator (deploy/allocator.yaml). Build from the repository root:
#   docker buildx build -f images/allocator.Dockerfile -t ghcr.io/purelb-rs/purelb-allocator:v0.1.0 .
# Runs as the distroless non-root user 65532 (deploy/allocator.yaml's runAsUser) on a read-only root
# filesystem: it writes nothing to disk.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p purelb-allocator --bin purelb-allocator \
 && install -D target/release/purelb-allocator /out/purelb-allocator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/purelb-allocator /usr/local/bin/purelb-allocator
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/purelb-allocator"]
