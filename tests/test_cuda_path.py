"""The CUDA path: device=auto, bf16 autocast, resume with the CUDA random streams, synchronized timing.

Skipped where no CUDA device is present (CI, this project's CPU machines); run them on a GPU
machine with `python -m pytest tests/test_cuda_path.py` (benchmarks/gpu_check.sh does).
"""

import json

import pytest
import torch
from helpers import cli
from test_train import StopAfter

from poolbench.config import compose_config
from poolbench.data import load_dataset
from poolbench.model import build_model
from poolbench.results import load_checkpoint
from poolbench.runtime import amp_enabled, bf16_is_native, select_device
from poolbench.speed import throughput
from poolbench.train import TrainingInterrupted, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
# fractional pooling draws from the CUDA generator, shift and flip from the loop's generator
SMALL = ["data=shapes", "data.train_size=640", "data.test_size=100", "train.epochs=2", "train.batch_size=64",
         "pool=fractional", "train.augment.shift=2", "train.augment.flip=true", "device=auto"]


class StreamRecorder(torch.nn.Module):
    """Wraps the model; per training step it records what the random streams decided: the
    augmented batch (shift and flip from the loop's generator) and the CUDA generator's state
    (fractional pooling draws its grids from it). Neither depends on float rounding."""

    def __init__(self, model):
        super().__init__()
        self.model, self.steps = model, []

    def forward(self, x):
        if self.training:
            self.steps.append((x.double().sum().item(), torch.cuda.get_rng_state()))
        return self.model(x)


def setup():
    cfg = compose_config(SMALL)
    torch.manual_seed(int(cfg.seed))
    return cfg, load_dataset(cfg.data).to(CUDA), StreamRecorder(build_model(cfg).to(CUDA))


def test_auto_picks_cuda_and_bf16_autocast():
    assert select_device("auto") == CUDA
    assert amp_enabled(CUDA, "auto")
    cpu = torch.device("cpu")
    assert amp_enabled(cpu, "auto") == bf16_is_native(cpu)


def test_resume_on_cuda_restores_every_random_stream(tmp_path):
    # Losses are not compared bit for bit: cuDNN and pooling backward kernels on CUDA may sum in
    # another order from run to run. The random streams must match exactly.
    cfg, data, straight = setup()
    train(cfg, straight, data, CUDA, tmp_path / "straight.pt")
    _, _, model = setup()
    with pytest.raises(TrainingInterrupted):
        train(cfg, model, data, CUDA, tmp_path / "stopped.pt", stop=StopAfter(4))
    ckpt = load_checkpoint(tmp_path / "stopped.pt")
    assert ckpt["cuda_rng"], "the checkpoint must hold the CUDA generator states"
    _, _, resumed = setup()
    torch.cuda.manual_seed_all(999)  # the checkpoint's CUDA state must win over whatever is set now
    train(cfg, resumed, data, CUDA, tmp_path / "resumed.pt", resume=ckpt)
    assert len(straight.steps) == 4 + len(resumed.steps) == 20
    for (batch_a, rng_a), (batch_b, rng_b) in zip(straight.steps[4:], resumed.steps):
        assert batch_a == batch_b
        assert torch.equal(rng_a, rng_b)


def test_throughput_times_cuda_work_with_synchronization():
    cfg, _, recorder = setup()
    model = recorder.model
    small = throughput(model, (1, 28, 28), 10, CUDA, 64, warmup=2, iters=5)
    large = throughput(model, (1, 28, 28), 10, CUDA, 4096, warmup=2, iters=5)
    # unsynchronized timing would measure only kernel launches, the same for both batch sizes
    assert large["infer_images_per_s"] > small["infer_images_per_s"]
    assert all(v > 0 for k, v in large.items() if k.endswith("_per_s"))


def test_cli_run_on_auto_device_records_cuda_and_bf16(tmp_path):
    result = cli("run", "data=shapes", "data.train_size=2000", "data.test_size=500", "train.epochs=2",
                 "eval.shift_pairs=2", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "complete"
    assert metrics["run"]["device"] == "cuda"
    assert metrics["throughput"]["matmul_dtype"] == "bfloat16"
    assert metrics["accuracy"]["test"] > 0.8
