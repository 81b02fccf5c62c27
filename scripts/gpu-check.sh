#!/usr/bin/env bash
# gpu-check.sh - the inference crate alone on a CUDA node that reaches no registry.
#
#   scripts/gpu-check.sh pack OUT.tgz   (a machine with registry access) a standalone workspace
#                                       of crates/infer + models/ with every crate it needs
#                                       vendored (no AWS SDK, no broker): ~tens of MB
#   scripts/gpu-check.sh run DIR [ARGS] (the GPU node, in the unpacked DIR) builds offline
#                                       against the node's PyTorch 2.11 (LIBTORCH_USE_PYTORCH=1,
#                                       its python3 first on PATH) and runs clip-infer-check:
#                                       `cost` with a batch sweep, jobs/s and GPU memory per size,
#                                       then `rife@3.9` at 512x512 (frames/s of the interpolator:
#                                       a motion-rife job needs 33 of them per 45-frame video),
#                                       then `mtcnn@2.6.0` at 640x640 (images/s of face framing:
#                                       one per framed job, unbatched)
#
# A node without CUDA still runs the sweep, on the CPU, and says so.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "[gpu-check] $*" >&2; }

pack() {
  local out="$1" tmp pack
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  pack="$tmp/clipfleet-infer"
  mkdir -p "$pack/crates" "$pack/models" "$pack/scripts" "$pack/.cargo"
  cp -r "$root/crates/infer" "$pack/crates/infer"
  cp -r "$root/crates/models" "$pack/crates/models"
  cp "$root"/models/manifest.toml "$root"/models/*.pt "$root"/models/*.safetensors "$root/models/README.md" "$pack/models/"
  cp -r "$root/models/samples" "$pack/models/samples"
  cp "$root/rust-toolchain.toml" "$root/Cargo.lock" "$pack/"
  cp "$root/scripts/gpu-check.sh" "$pack/scripts/"
  # A workspace of one crate: the root's package fields, lints and just the dependencies infer uses.
  python3 - "$root/Cargo.toml" "$root/crates/infer/Cargo.toml" "$root/crates/models/Cargo.toml" > "$pack/Cargo.toml" <<'PY'
import sys, tomllib
root = tomllib.load(open(sys.argv[1], "rb"))
ws = root["workspace"]
used = set()
for path in sys.argv[2:]:
    crate = tomllib.load(open(path, "rb"))
    for section in ("dependencies", "dev-dependencies", "build-dependencies"):
        used.update(crate.get(section, {}).keys())
def value(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, (int, float)): return str(v)
    if isinstance(v, str): return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list): return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict): return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))
print('[workspace]\nresolver = "3"\nmembers = ["crates/infer", "crates/models"]\n')
print("[workspace.package]")
for k, v in ws["package"].items(): print(f"{k} = {value(v)}")
print("\n[workspace.dependencies]")
for name in sorted(used):
    print(f"{name} = {value(ws['dependencies'][name])}")
for table in ("rust", "clippy"):
    print(f"\n[workspace.lints.{table}]")
    for k, v in ws["lints"][table].items(): print(f"{k} = {value(v)}")
print('\n[profile.release]\ndebug = "line-tables-only"')
PY
  log "vendoring the inference crate's dependencies"
  (cd "$pack" && cargo vendor --quiet --versioned-dirs vendor > .cargo/config.toml)
  tar czf "$out" -C "$tmp" clipfleet-infer
  log "wrote $out ($(du -h "$out" | cut -f1))"
}

run() {
  local dir="$1"; shift
  cd "$dir"
  if [ -z "${LIBTORCH:-}" ]; then
    export LIBTORCH_USE_PYTORCH=1
    python3 -c 'import torch; print("[gpu-check] python torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' >&2
  fi
  cargo build --offline --release -p clipfleet-infer --features cli --bins
  ./target/release/clip-infer-check --model cost --batches 1,2,4,8,16,32 --jobs 64 "$@"
  ./target/release/clip-infer-check --model rife --version 3.9 --batches 1,2,4,8,16,32 --jobs 64 "$@"
  ./target/release/clip-infer-check --model mtcnn --version 2.6.0 --batches 1 --jobs 64 "$@"
}

case "${1:-}" in
  pack) [ $# -eq 2 ] || { sed -n '2,15p' "$0" >&2; exit 2; }; pack "$2" ;;
  run) [ $# -ge 2 ] || { sed -n '2,15p' "$0" >&2; exit 2; }; shift; run "$@" ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
