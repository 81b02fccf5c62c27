# syntax=docker/dockerfile:1.7
# clip-worker. Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t clipfleet/clip-worker:0.1.0 .              # GPU (default)
#   docker build -f deploy/docker/worker.Dockerfile --target cpu -t clipfleet/clip-worker:0.1.0-cpu .  # CPU (compose)
#
# libtorch: 2.11.0, the PyTorch our GPU nodes carry (docs/CUDA-NODES.md); tch 0.24 compiles
# against exactly that. Its CUDA build on PyPI is cu130 (CUDA 13.0): the `torch` wheel plus the
# `nvidia-*` wheels it depends on. The builder installs them at a fixed path
# (/opt/libtorch/site-packages), torch-sys builds against $LIBTORCH = …/torch, and
# crates/infer/build.rs bakes …/torch/lib in as RUNPATH and keeps libtorch.so (→ libtorch_cuda)
# linked. The runtime gets torch/lib and nvidia/ at the same path, so libtorch_cuda finds the
# CUDA libraries through its own $ORIGIN-relative RUNPATH: no LD_LIBRARY_PATH.
#
# Runtime base: nvidia/cuda *base* (CUDA 13.0 runtime and the driver hooks only): cuBLAS, cuDNN
# and the rest come with the wheels, so the larger `runtime` image would carry them twice.
# ffmpeg (libx264, and NVENC through the driver's video capability), libheif for HEIC photos.

FROM rust:1.95-bookworm AS build-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends libheif-dev pkg-config cmake python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# --- CUDA libtorch (the default image) ---
FROM build-base AS build-cuda
ARG TORCH_VERSION=2.11.0
RUN python3 -m venv /opt/pip \
 && /opt/pip/bin/pip install --no-cache-dir --target /opt/libtorch/site-packages "torch==${TORCH_VERSION}" \
 && echo "${TORCH_VERSION}" > /opt/libtorch/site-packages/torch/build-version
ENV LIBTORCH=/opt/libtorch/site-packages/torch
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=clipfleet-target-cuda \
    cargo build --release --locked -p clipfleet-worker --bin clip-worker \
 && install -D -m 0755 target/release/clip-worker /out/clip-worker \
 && readelf -d /out/clip-worker | grep -q 'NEEDED.*libtorch\(_cuda\)\?\.so' \
 && readelf -d /out/clip-worker | grep -q "PATH.*${LIBTORCH}/lib"

# --- CPU libtorch (compose, CPU-only clusters): the project's own installer ---
FROM build-base AS build-cpu
COPY scripts/install-libtorch.sh scripts/install-libtorch.sh
RUN bash scripts/install-libtorch.sh /opt/clipfleet/libtorch-2.11.0 > /opt/clipfleet/libtorch.env
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=clipfleet-target-cpu \
    . /opt/clipfleet/libtorch.env \
 && cargo build --release --locked -p clipfleet-worker --bin clip-worker \
 && install -D -m 0755 target/release/clip-worker /out/clip-worker

FROM debian:12-slim AS cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl ffmpeg libheif1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 clipfleet \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin clipfleet
COPY --from=build-cpu /opt/clipfleet/libtorch-2.11.0/libtorch/lib /opt/clipfleet/libtorch-2.11.0/libtorch/lib
COPY --from=build-cpu /out/clip-worker /usr/local/bin/clip-worker
COPY models/manifest.toml models/*.pt /opt/clipfleet/models/
USER 10001:10001
EXPOSE 9090
# Ready only after the models are loaded and warmed up; alive as soon as it listens.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9090/livez"]
ENTRYPOINT ["/usr/local/bin/clip-worker"]
CMD ["serve", "--config", "/etc/clipfleet/clipfleet.toml", "--manifest", "/opt/clipfleet/models/manifest.toml", "--listen", "0.0.0.0:9090"]

FROM nvidia/cuda:13.0.2-base-ubuntu24.04 AS cuda
# Ubuntu 24.04 (glibc 2.39, libheif 1.17) runs what Debian 12 (glibc 2.36, libheif 1.15) built.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl ffmpeg libheif1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 clipfleet \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin clipfleet
COPY --from=build-cuda /opt/libtorch/site-packages/torch/lib /opt/libtorch/site-packages/torch/lib
COPY --from=build-cuda /opt/libtorch/site-packages/nvidia /opt/libtorch/site-packages/nvidia
COPY --from=build-cuda /out/clip-worker /usr/local/bin/clip-worker
COPY models/manifest.toml models/*.pt /opt/clipfleet/models/
# compute + utility for CUDA and nvidia-smi, video for NVENC (ffmpeg h264_nvenc).
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,video
USER 10001:10001
EXPOSE 9090
# Model load and warm-up on a GPU can take minutes; Kubernetes uses its own startupProbe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=600s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9090/livez"]
ENTRYPOINT ["/usr/local/bin/clip-worker"]
CMD ["serve", "--config", "/etc/clipfleet/clipfleet.toml", "--manifest", "/opt/clipfleet/models/manifest.toml", "--listen", "0.0.0.0:9090"]
