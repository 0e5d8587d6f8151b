#!/usr/bin/env bash
# The short GPU re-check after a change (about 3-4 minutes): the CUDA tests, every distortion's
# figures, spatter's and jpeg's fused kernels against their torch paths (benchmarks/gpu_fused.py),
# the ViT-S/16 fit ratios (finetune, asym_kd, its teacher cache) with the evaluation share, and the
# profile of benchmarks/gpu_profile.py at 224 px. `gpu_check.sh` is the full run.
# Usage: bash benchmarks/gpu_recheck.sh [OUT_DIR]   (works from a checkout, installed or not)
set -uo pipefail
out="${1:-${OUT:-gpu-recheck}}"
source "$(dirname "$0")/gpu_env.sh"
timeout 100 python3 -m pytest -q -n 0 -p no:cacheprovider -k "not interpreter" tests/test_rng_fused.py tests/plugins/distortions/test_fractal.py \
    tests/plugins/distortions/test_fused_glass.py tests/plugins/distortions/test_fused_zoom.py \
    tests/plugins/distortions/test_shot_noise.py tests/plugins/distortions/test_fused_spatter.py \
    tests/plugins/distortions/test_fused_jpeg.py tests/plugins/distortions/test_fused_snow.py tests/plugins/distortions/test_fused_blur.py tests/plugins/distortions/test_jpeg_codec.py \
    tests/plugins/distortions/test_device_sync.py 2>&1 | tail -25 | tee "$out/cuda-tests.txt"
timeout 90 python3 benchmarks/gpu.py --only distortions 2>&1 | grep -v "^W[0-9]" | tee "$out/distortions.jsonl"
timeout 90 python3 benchmarks/gpu_fused.py 2>&1 | grep -v "^W[0-9]\|USDT\|^ERROR\|UserWarning\|_warn_once" | tee "$out/fused.jsonl"
timeout 120 python3 benchmarks/gpu.py --only methods --models vit_small_patch16_224 --no-compile \
    --methods finetune,asym_kd,asym_kd:teacher_cache=true:variants=1 2>&1 | grep -v "^W[0-9]" \
    | tee "$out/methods.jsonl"
timeout 90 python3 benchmarks/gpu_profile.py --sizes 224 2>&1 | grep -v "^W[0-9]\|USDT\|^ERROR\|UserWarning\|_warn_once" \
    | tee "$out/profile.jsonl"
