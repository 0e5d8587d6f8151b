# Sourced by gpu_check.sh and gpu_recheck.sh with the output folder in $out: imports robench from
# the checkout when it is not installed, unbuffers Python, and records the card and the versions.
mkdir -p "$out"
if ! python3 -c "import robench_plugins" 2>/dev/null; then  # not installed: import from the checkout
    mkdir -p /tmp/robench-path && ln -sfn "$PWD/plugins" /tmp/robench-path/robench_plugins
    export PYTHONPATH="$PWD:/tmp/robench-path${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, timm, triton; print('torch', torch.__version__, 'timm', timm.__version__,
'triton', triton.__version__)" | tee -a "$out/gpu.txt"
