#!/usr/bin/env bash
# The CUDA path, checked in one pass on a GPU machine, most important step first:
#   1. tests/test_cuda_path.py: device=auto, bf16 autocast, resume with the CUDA random streams,
#      synchronized throughput timing, a CLI run recording device=cuda
#   2. benchmarks/gpu_cifar10.py: the CIFAR-10 >= 94% within 10 s goal (3 runs, eager)
#   3. `poolbench run` with the default MNIST recipe on device=auto
#   4. `poolbench run data=cifar10` (the CPU recipe) on device=auto
#   5. benchmarks/gpu_cifar10.py with a 3x longer schedule, if time is left
#
#   CIFAR_SOURCE=path/to/cifar10 benchmarks/gpu_check.sh [OUT_DIR] [SECONDS_BUDGET]
#
# Each step has its own time limit and the script skips a step that would not fit the budget, so a
# slow step costs only itself. Logs and each run's metrics.json go to OUT_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-outputs/gpu-check}"
budget="${2:-420}"
cifar="${CIFAR_SOURCE:?set CIFAR_SOURCE to a CIFAR-10 copy (folder or archive)}"
work="$(mktemp -d)"
mkdir -p "$out"
log="$out/gpu_check.log"
export PYTHONUNBUFFERED=1 COLUMNS=120

step() {  # step NAME LIMIT_S COMMAND...: run it if it fits what is left of the budget
  local name="$1" limit="$2"; shift 2
  local left=$((budget - SECONDS))
  if ((left < limit / 2)); then echo "=== $name: skipped, ${left} s of the budget left" | tee -a "$log"; return; fi
  ((limit > left)) && limit=$left
  echo "=== $name (limit ${limit} s, at ${SECONDS} s): $*" | tee -a "$log"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$log"
}

{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee "$log"

step cuda-tests 150 python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda_path.py
step gpu-cifar10 150 python3 benchmarks/gpu_cifar10.py --runs 3 --data-override "data.source=$cifar"
step mnist-run 90 python3 -m poolbench run device=auto "hydra.run.dir=$work/mnist"
step cifar10-run 150 python3 -m poolbench run data=cifar10 device=auto "data.source=$cifar" "hydra.run.dir=$work/cifar10"
step gpu-cifar10-30-epochs 120 python3 benchmarks/gpu_cifar10.py --runs 2 --epochs 30 --data-override "data.source=$cifar"

for run in mnist cifar10; do
  [[ -f "$work/$run/metrics.json" ]] && cp "$work/$run/metrics.json" "$out/$run-metrics.json"
done
echo "=== done in ${SECONDS} s" | tee -a "$log"
