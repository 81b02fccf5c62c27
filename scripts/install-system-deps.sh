#!/usr/bin/env bash
# scripts/install-system-deps.sh - installs the system packages the build and tests need and a
# fresh machine lacks: ffmpeg/ffprobe (crates/media's encoder and its ffprobe checks),
# libheif-dev (crates/media's `heic` feature) and nasm (openh264's SIMD kernels: without it
# the crate builds only its plain C fallbacks) and mold (the linker scripts/link-cc hands every
# link to: the test build links dozens of binaries against libtorch). With --browser also
# Chromium and its WebDriver (chromium, chromium-driver: the operator console's browser tests;
# scripts/test asks for them, the main job does not). Idempotent: installs only what is missing
# and refreshes the package index only then. Debian/Ubuntu (apt); needs root or sudo.
set -euo pipefail
packages=(ffmpeg libheif-dev nasm mold)
if [ "${1:-}" = "--browser" ]; then
  packages+=(chromium chromium-driver)
fi
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
