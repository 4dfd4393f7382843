#!/usr/bin/env bash
# Installs the Debian packages mpc needs on a fresh Debian 12 machine (run as root).
#  - Mesa >= 25 (lavapipe, a Vulkan driver on the CPU) from bookworm-backports: Dawn refuses
#    the stock Debian 12 Mesa 22.3.6.
#  - dataset-fashion-mnist (training data), libonnx-testdata (ONNX backend node tests).
#  - chromium: the browser test trains a compiled program in headless Chromium (WebGPU on
#    SwiftShader).
# The backports suite is added with the same archive address the machine already uses.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

have_backports() { grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; }

if ! have_backports; then
  apt-get update -qq
  archive=$(apt-cache policy | awk '/ bookworm\/main / && $2 ~ /^https?:/ {print $2; exit}')
  if [ -z "$archive" ]; then
    echo "setup-debian: could not find the Debian archive address in apt-cache policy" >&2
    exit 1
  fi
  echo "deb $archive bookworm-backports main" > /etc/apt/sources.list.d/mpc-backports.list
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends libvulkan1 dataset-fashion-mnist libonnx-testdata chromium >/dev/null
apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers >/dev/null
dpkg-query -W -f='${Package} ${Version}\n' mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist libonnx-testdata chromium
