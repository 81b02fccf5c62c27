# syntax=docker/dockerfile:1.7
# clip-ingest: the HTTP API. Build from the repository root:
#   docker build -f deploy/docker/ingest.Dockerfile -t clipfleet/clip-ingest:0.1.0 .
# Builder: Debian 12 (glibc 2.36, libheif 1.15: the versions the workspace pins against).
# Runtime: debian 12 slim with libheif (HEIC photos), CA certificates and curl for HEALTHCHECK;
# runs as uid 10001, read-only root filesystem friendly (writes nothing outside /tmp).

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libheif-dev pkg-config cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p clipfleet-ingest --bin clip-ingest \
 && install -D -m 0755 target/release/clip-ingest /out/clip-ingest

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libheif1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 clipfleet \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin clipfleet
COPY --from=build /out/clip-ingest /usr/local/bin/clip-ingest
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/livez"]
ENTRYPOINT ["/usr/local/bin/clip-ingest"]
CMD ["serve", "--config", "/etc/clipfleet/clipfleet.toml", "--listen", "0.0.0.0:8080"]
