import json

import pytest

from poolbench.bench import bench_operator, operator_config, split_pool_override
from poolbench.errors import UsageError
from poolbench.pools import pool_names
from tests.conftest import run_cli

FAST = ["data=shapes", "threads=1", "eval.throughput.batch_size=16", "eval.throughput.warmup=1",
        "eval.throughput.iters=2", "model.channels=[4,8]"]


def test_pool_override_narrows_the_table():
    assert split_pool_override(["pool=max,avg", "threads=1"]) == (["max", "avg"], ["threads=1"])
    assert split_pool_override(["threads=1"])[0] == pool_names()
    with pytest.raises(UsageError, match="Unknown pool 'nope'"):
        split_pool_override(["pool=nope"])


def test_bench_operator_counts_and_times_one_network():
    import torch

    row = bench_operator(operator_config("strided", FAST), torch.device("cpu"))
    assert row["pool"] == "strided" and row["params"] > 0 and row["flops_per_image"] > 0
    assert row["infer_images_per_s"] > 0 and row["train_images_per_s"] > 0 and row["matmul_flops_per_s"] > 0
    assert row["train_mfu"] == pytest.approx(3 * row["flops_per_image"] * row["train_images_per_s"]
                                             / row["matmul_flops_per_s"])


def test_bench_command_prints_every_operator_and_saves_json(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", *FAST, "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    saved = json.loads(out.read_text())
    assert [row["pool"] for row in saved["rows"]] == pool_names()
    for name in pool_names():
        assert name in result.stdout


def test_bench_unknown_pool_is_a_usage_error():
    result = run_cli("bench", "pool=nope")
    assert result.returncode == 2
    assert "Unknown pool 'nope'" in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_each_dataset_picks_its_model_width_and_small_still_works():
    from poolbench.config import compose_config

    assert list(compose_config([]).model.channels) == [16, 32, 64]
    assert list(compose_config(["data=cifar10"]).model.channels) == [32, 64, 128, 256]
    narrow = compose_config(["data=cifar10", "model=small"]).model
    assert narrow.name == "small" and list(narrow.channels) == [16, 32, 64]
    assert list(compose_config(["data=cifar10", "model.channels=[8,16]"]).model.channels) == [8, 16]
