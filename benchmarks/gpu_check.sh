#!/usr/bin/env bash
# The CUDA path, checked in one device call of at most 8 minutes, most important step first:
#   0. the card: nvidia-smi name, driver, memory; torch and CUDA versions (into the log)
#   1. tests/test_cuda_path.py: device=auto, bf16 autocast, resume with the CUDA random streams,
#      synchronized throughput timing, a CLI run recording device=cuda                  (limit 90 s)
#   2. benchmarks/gpu_cifar10.py, pool=max, 2 runs of the default schedule (30 epochs): the
#      CIFAR-10 >= 94% within 10 s goal, verdict and card name in the log      (limit 60 s)
#   3. the same, 1 run each for the six original operators in one process (data loaded once):
#      max, avg, strided, fractional, attention, then global last (no downsampling at all,
#      32x32 throughout, by far the slowest; a time-out costs only what is left)   (limit 120 s)
#   4. `poolbench run device=auto` with the default MNIST recipe                     (limit 60 s)
#   5. `poolbench run data=cifar10 device=auto` (the CPU recipe)                      (limit 60 s)
#   6. `poolbench bench device=cuda`: throughput and MFU of every operator            (limit 60 s)
#
#   CIFAR_SOURCE=path/to/cifar10 [MNIST_ROOT=dir] bash benchmarks/gpu_check.sh [OUT_DIR] [SECONDS_BUDGET]
#
# A device machine has no network: carry CIFAR-10 (e.g. the 18 MB cifar10-jpg.tar.xz) and, for
# step 4, a folder holding MNIST/raw/ with the four raw files (MNIST_ROOT, passed as data.root).
#
# OUT_DIR defaults to outputs/gpu-check, the budget to 450 s (the device call's 480 s less a
# margin). Each step has its own time limit, cut to what is left of the budget, and the script
# skips a step when less than half its limit is left, so a slow step costs only itself. OUT_DIR
# gets gpu_check.log, cifar10_max.json and cifar10_six.json (gpu_cifar10.py's results, written
# after each run), mnist-metrics.json and cifar10-metrics.json (the two runs) and bench_cuda.json.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-outputs/gpu-check}"
budget="${2:-450}"
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
  timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$log"
}

{ echo "=== card"
  nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  timeout 60 python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
    torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"; } 2>&1 | tee "$log"

step cuda-tests 90 python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda_path.py
step gpu-cifar10-max 60 python3 benchmarks/gpu_cifar10.py --pools max --runs 2 \
  --json-out "$out/cifar10_max.json" --data-override "data.source=$cifar"
step gpu-cifar10-six 120 python3 benchmarks/gpu_cifar10.py --pools max,avg,strided,fractional,attention,global \
  --runs 1 --json-out "$out/cifar10_six.json" --data-override "data.source=$cifar"
step mnist-run 60 python3 -m poolbench run device=auto ${MNIST_ROOT:+"data.root=$MNIST_ROOT"} "hydra.run.dir=$work/mnist"
step cifar10-run 60 python3 -m poolbench run data=cifar10 device=auto "data.source=$cifar" "hydra.run.dir=$work/cifar10"
step bench-cuda 60 python3 -m poolbench bench device=cuda -o "$out/bench_cuda.json"

for run in mnist cifar10; do
  [[ -f "$work/$run/metrics.json" ]] && cp "$work/$run/metrics.json" "$out/$run-metrics.json"
done
echo "=== outputs: $(cd "$out" && ls | tr '\n' ' ')" | tee -a "$log"
echo "=== done in ${SECONDS} s" | tee -a "$log"
