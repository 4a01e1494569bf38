#!/usr/bin/env bash
# Every check that needs a GPU, as one command for a GPU machine lent for a few minutes (about 9 min
# on an H100): the `gpu` tests (memory caps, no host waits in training steps, four 0.25-GPU Ray
# trials sharing the card) and the packing benchmark for the small and the reference model, without
# and then with NVIDIA MPS. Logs go to $OUT (or /tmp/gpu_check).
#
# On a machine without network, build the bundle here first (bash benchmarks/gpu_bundle.sh) and carry
# .device along; this script installs it into /tmp/site.
# Usage: bash benchmarks/gpu_check.sh [TRIALS=16]
set -uo pipefail
trials=${1:-16}
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
if [ -f .device/ray.tar.xz ]; then
    mkdir -p /tmp/site && tar -xJf .device/ray.tar.xz -C /tmp/site &&
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/wheels/*.whl ||
        { echo "gpu_check: could not install .device into /tmp/site"; exit 2; }
    export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

timeout 240 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/test_gpu_study.py 2>&1 |
    tee "$out/pytest_gpu.log"

pack() {  # $1: label; the rest: gpu_packing.py arguments
    local label=$1; shift
    timeout 150 python3 benchmarks/gpu_packing.py --trials "$trials" "$@" 2>&1 | tee "$out/packing_$label.log"
}
pack small_cnn --arch small_cnn --width 0
pack vgg13 --arch vgg13_paper --width 32
# MPS lets the processes' kernels run side by side instead of taking turns on the card
if nvidia-cuda-mps-control -d; then
    pack small_cnn_mps --arch small_cnn --width 0
    pack vgg13_mps --arch vgg13_paper --width 32
    echo quit | nvidia-cuda-mps-control
fi
grep -h "packing_speedup" "$out"/packing_*.log
