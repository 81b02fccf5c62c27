#!/usr/bin/env bash
# export-models.sh - regenerate the TorchScript files in models/ from their export scripts.
#
# Installs the full Python `torch` (the same 2.11.0 as the libtorch the Rust crates link; a
# ~2.7 GB download, cached) only here: CI and the tests use the committed files and never need it.
# Usage: scripts/export-models.sh [SCRIPT.py ...]   (default: every models/export_*.py)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CLIPFLEET_CACHE:-$HOME/.cache/clipfleet}"
eval "$(bash "$root/scripts/install-libtorch.sh" --python "$cache/libtorch-2.11.0")"
scripts=("$@")
[ ${#scripts[@]} -gt 0 ] || mapfile -t scripts < <(ls "$root"/models/export_*.py)
for script in "${scripts[@]}"; do
  echo "[export-models] $script" >&2
  # A fixed hash seed: TorchScript lists a module's constants in set order.
  PYTHONHASHSEED=0 "$TORCH_PYTHON" "$script"
done
