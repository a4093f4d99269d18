# syntax=docker/dockerfile:1
# ghcr.io/purelb-rs/purelb-agent: the node agent (deploy/agent.yaml). Build from the repository root:
#   docker buildx build -f images/agent.Dockerfile -t ghcr.io/purelb-rs/purelb-agent:v0.1.0 .
# Runs as root (deploy/agent.yaml's runAsUser: 0) because NET_ADMIN and NET_RAW only take effect for uid 0
# without file capabilities; the DaemonSet drops every other capability and mounts the root read-only.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p purelb-agent --bin purelb-agent \
 && install -D target/release/purelb-agent /out/purelb-agent

FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/purelb-agent /usr/local/bin/purelb-agent
USER 0:0
ENTRYPOINT ["/usr/local/bin/purelb-agent"]
