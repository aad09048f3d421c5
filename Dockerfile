# syntax=docker/dockerfile:1
#
# redis-cache-operator container image.
#
#   docker build -t redis-cache-operator:0.1.0 .
#
# Build stage: the release binary from the locked dependencies, exactly as
# `cargo build --release --locked` builds it outside Docker.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The build context is only what cargo needs (see .dockerignore).
COPY . .
# The cargo registry is a cache mount so rebuilds do not download every crate
# again; target/ stays in the layer so the binary can be copied out below.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked

# Runtime stage: distroless glibc image (CA certificates, no shell, no package
# manager), running as the unprivileged user 65532. The operator writes only
# to stderr and the network, so a read-only root filesystem works.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="redis-cache-operator" \
      org.opencontainers.image.description="Kubernetes operator for managed Redis/Valkey caches on AWS ElastiCache" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /src/target/release/redis-cache-operator /redis-cache-operator
USER 65532:65532
# /healthz, /readyz and /metrics (HTTP_ADDR, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/redis-cache-operator"]
CMD ["run"]
