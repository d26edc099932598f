#!/usr/bin/env bash
# Set up an environment in .venv: PyTorch, this package, and (when apt is usable) Debian's
# Fashion-MNIST package, the embedded default dataset. `--test` adds the test extras (ONNX Runtime,
# Ray, submitit, timm, MLflow, W&B, ...), which the main job does not need.
set -euo pipefail
EXTRAS=""
if [ "${1:-}" = "--test" ]; then EXTRAS="[test]"; fi
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true

if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  case "$(uname -m)" in
    aarch64|arm64) .venv/bin/pip install -q "torch==2.9.1" "torchvision==0.24.1" ;;
    *)             .venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1" ;;
  esac
fi
.venv/bin/pip install -q -e ".$EXTRAS"

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
    ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist) \
      >/dev/null 2>&1 || echo "setup: could not install dataset-fashion-mnist with apt; mate will try data.root or a download"
  else
    echo "setup: apt is not usable here; Fashion-MNIST will be read from data.root or downloaded by torchvision"
  fi
fi
echo "setup: done ($(.venv/bin/python -c 'import torch, mate; print("torch", torch.__version__, "| mate", mate.__version__)'))"
