#!/usr/bin/env bash
# Everything a GPU machine should check, in one go (about 6 minutes on an H100):
# the figures of benchmarks/gpu.py, the CUDA tests, spatter's and jpeg's fused kernels against their torch paths
# (benchmarks/gpu_fused.py), and a small robench run on the GPU.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (works from a checkout, installed or not)
set -uo pipefail
out="${1:-${OUT:-gpu-check}}"
source "$(dirname "$0")/gpu_env.sh"
timeout 450 python3 benchmarks/gpu.py 2>&1 | grep -v "^W[0-9]" | tee "$out/gpu.jsonl"
timeout 150 python3 -m pytest -q -n 0 -p no:cacheprovider -k "not interpreter" tests/plugins/distortions/test_jpeg_codec.py \
    tests/plugins/distortions/test_device_sync.py tests/test_rng_fused.py tests/plugins/distortions/test_fractal.py \
    tests/plugins/distortions/test_fused_glass.py tests/plugins/distortions/test_fused_zoom.py \
    tests/plugins/distortions/test_shot_noise.py tests/plugins/distortions/test_fused_spatter.py \
    tests/plugins/distortions/test_fused_jpeg.py tests/plugins/distortions/test_fused_snow.py tests/plugins/distortions/test_fused_blur.py 2>&1 | tail -25 | tee "$out/cuda-tests.txt"
timeout 90 python3 benchmarks/gpu_fused.py 2>&1 | grep -v "^W[0-9]\|USDT\|^ERROR\|UserWarning\|_warn_once" | tee "$out/fused.jsonl"
timeout 120 python3 -m robench run -q --device cuda --datasets shapes --methods none,finetune,asym_kd \
    --distortions gaussian_noise,occlusion --seeds 0 --epochs 2 --pretrain-epochs 10 --out /tmp/gpu-run 2>&1 \
    | tail -25 | tee "$out/run.txt"
