#!/usr/bin/env bash
# The GPU checks as one script, for a machine with a CUDA GPU: the GPU tests, the
# placement and trainer tests, the feed rate and the harness-vs-bare training rate of ResNet-50
# at 224 px.  It installs nothing: it runs this checkout (PYTHONPATH) with the machine's python3
# and its PyTorch.  Output goes to $OUT (default ./gpu-check), one file per check.  The harness's
# training rate it prints (16,384 images) is what `cascade plan` prices this GPU class with: add
# or update its row in cascade/configs/gpu_rates.yaml.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"; nproc; } 2>&1 | tee "$out/env.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_placement.py tests/test_trainer.py 2>&1 | tee "$out/tests.txt"
python3 benchmarks/feed_rate.py --seconds 3 2>&1 | tee "$out/feed_rate_h200.txt"
for n in 4096 16384; do
    python3 benchmarks/train_overhead.py --device cuda --backbone resnet50 --size 224 --n $n --batch 128 --repeats 3 --epochs 3 \
        --threads 4 2>&1 | tee -a "$out/train_overhead_h200.txt"
done
