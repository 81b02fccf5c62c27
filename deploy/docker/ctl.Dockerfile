# syntax=docker/dockerfile:1.7
# clipctl: the operator CLI, e.g. as a Kubernetes Job or `docker run --rm`, and the operator web
# console (`clipctl console`, deploy/k8s/base/console.yaml).
# Build from the repository root:
#   docker build -f deploy/docker/ctl.Dockerfile -t clipfleet/clipctl:0.1.0 .
# clipctl also carries the embedded all-in-one fleet (`clipctl generate`, `clipctl up`), which
# links libtorch: the builder installs the CPU libtorch of scripts/install-libtorch.sh (from the
# PyPI wheels) at a fixed path, the binary gets that path as RUNPATH (crates/infer/build.rs),
# and the runtime receives the libraries only if the binary really needs them.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libheif-dev pkg-config cmake python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY scripts/install-libtorch.sh scripts/install-libtorch.sh
RUN bash scripts/install-libtorch.sh /opt/clipfleet/libtorch-2.11.0 > /opt/clipfleet/libtorch.env
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    . /opt/clipfleet/libtorch.env \
 && cargo build --release --locked -p clipfleet-ctl --bin clipctl \
 && install -D -m 0755 target/release/clipctl /out/usr/local/bin/clipctl \
 && if readelf -d /out/usr/local/bin/clipctl | grep -q 'libtorch'; then \
      mkdir -p /out/opt/clipfleet/libtorch-2.11.0/libtorch \
      && cp -a /opt/clipfleet/libtorch-2.11.0/libtorch/lib /out/opt/clipfleet/libtorch-2.11.0/libtorch/; \
    fi

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libheif1 ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 clipfleet \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin clipfleet
COPY --from=build /out/ /
COPY models/manifest.toml models/*.pt /opt/clipfleet/models/
USER 10001:10001
# Mostly a command-line tool; the console's /livez and /readyz are probed by Kubernetes and
# compose (curl).
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/clipctl"]
CMD ["--help"]
