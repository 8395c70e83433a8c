#!/usr/bin/env bash
# The GPU check on this workplace's device machine (docs/GPU_CHECK.md). Its image's python3 has torch,
# onnxruntime, numpy, pandas, pyarrow, httpx ...; what it lacks travels from .cache/gpu-carry (make
# gpu-carry) in three calls on one warm machine, each carrying one part (64 MiB a call with the tree):
#   bash bench/gpu_device.sh a   carry .cache/gpu-carry/a: spaCy's wheels into $LIB
#   bash bench/gpu_device.sh b   carry .cache/gpu-carry/b: the service's wheels, the small demo models
#   bash bench/gpu_device.sh c   carry .cache/gpu-carry/c: cifar10, then the check ($OUT/gpu_check.json)
# Installed with --target and found through PYTHONPATH, ahead of the image's own packages.
set -euo pipefail
LIB=/root/fastai-serve-lib
STORE=/root/fastai-serve-store
part=${1:?a, b or c}
here=.cache/gpu-carry/$part
case "$part" in
  a) python3 -m pip install --quiet --no-index --no-deps --target "$LIB" "$here"/*.whl ;;
  b) python3 -m pip install --quiet --no-index --no-deps --target "$LIB" --upgrade "$here"/wheels/*.whl
     mkdir -p "$STORE" && cp -r "$here"/models/. "$STORE"/ ;;
  c) cp -r "$here"/models/. "$STORE"/
     nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
     PYTHONUNBUFFERED=1 PYTHONPATH="$LIB:$PWD" MPLBACKEND=Agg \
       python3 -m bench.gpu_check --store "$STORE" --out "${OUT:-.cache/gpu-check}" ;;
  *) echo "usage: bash bench/gpu_device.sh a|b|c" >&2; exit 2 ;;
esac
