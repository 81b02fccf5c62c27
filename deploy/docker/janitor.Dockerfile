# syntax=docker/dockerfile:1.7
# clip-janitor: retention sweeps (one active instance: a PostgreSQL advisory lock).
# Build from the repository root:
#   docker build -f deploy/docker/janitor.Dockerfile -t clipfleet/clip-janitor:0.1.0 .
# No media decoding here: the runtime has only CA certificates and curl (HEALTHCHECK).

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libheif-dev pkg-config cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p clipfleet-janitor --bin clip-janitor \
 && install -D -m 0755 target/release/clip-janitor /out/clip-janitor

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 clipfleet \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin clipfleet
COPY --from=build /out/clip-janitor /usr/local/bin/clip-janitor
USER 10001:10001
EXPOSE 9090
HEALTHCHECK --interval=15s --timeout=3s --start-period=15s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9090/livez"]
ENTRYPOINT ["/usr/local/bin/clip-janitor"]
CMD ["run", "--config", "/etc/clipfleet/clipfleet.toml", "--listen", "0.0.0.0:9090"]
