#!/usr/bin/env bash
# Everything a fresh Debian 12 machine needs to build, test and run mpc (run as root from the
# repository root): Debian packages (Mesa lavapipe from bookworm-backports, Fashion-MNIST,
# ONNX node tests), npm packages, and the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
# onnxruntime-node (a test-only oracle) would try to download CUDA files at install time.
ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
npm run build
