# syntax=docker/dockerfile:1
# ghcr.io/purelb-rs/purelb-agent: the node agent (deploy/agent.yaml). Build from the repository root:
#   docker buildx build -f images/agent.Dockerfile -t ghcr.io/purelb-rs/purelb-agent:v0.1.0 .
# A static executable (musl; images/build-static.sh, which images/check.sh runs in CI) on distroless
# static. Runs as root (deploy/agent.yaml's runAsUser: 0) because NET_ADMIN and NET_RAW only take effect
# for uid 0 without file capabilities; the DaemonSet drops every other capability and mounts the root
# read-only.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    bash images/build-static.sh /out purelb-agent

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/purelb-agent /usr/local/bin/purelb-agent
USER 0:0
EXPOSE 9091
ENTRYPOINT ["/usr/local/bin/purelb-agent"]
