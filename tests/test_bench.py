"""`poolbench bench`: every operator's throughput and MFU, no data, no training."""

import functools
import json

import pytest
from helpers import cli

from poolbench import bench, speed
from poolbench.bench import bench_operator, operator_config, split_pool_override
from poolbench.errors import UsageError
from poolbench.pools import pool_names

FAST = ["data=shapes", "threads=1", "eval.throughput.batch_size=16", "eval.throughput.warmup=1",
        "eval.throughput.iters=2", "model.channels=[4,8]"]


def test_pool_override_narrows_the_table():
    assert split_pool_override(["pool=max,avg", "threads=1"]) == (["max", "avg"], ["threads=1"])
    assert split_pool_override(["threads=1"])[0] == pool_names()
    with pytest.raises(UsageError, match="Unknown pool 'nope'"):
        split_pool_override(["pool=nope"])


def test_bench_operator_counts_and_times_one_network(monkeypatch):
    import torch

    # The full-size matmul rate (2 s here) is what every complete run measures (test_end_to_end, test_cli).
    monkeypatch.setattr(bench, "matmul_flops_per_s", functools.partial(speed.matmul_flops_per_s, size=256))
    row = bench_operator(operator_config("strided", FAST), torch.device("cpu"))
    assert row["pool"] == "strided" and row["params"] > 0 and row["flops_per_image"] > 0
    assert row["infer_images_per_s"] > 0 and row["train_images_per_s"] > 0 and row["matmul_flops_per_s"] > 0
    assert row["train_mfu"] == pytest.approx(3 * row["flops_per_image"] * row["train_images_per_s"]
                                             / row["matmul_flops_per_s"])


def test_bench_command_prints_the_operators_asked_for_and_saves_json(tmp_path, monkeypatch):
    # The full-size matmul rate would cost 2 s a row; a small one will do. (No pool=: every operator,
    # test_pool_override_narrows_the_table.)
    monkeypatch.setattr(bench, "matmul_flops_per_s", functools.partial(speed.matmul_flops_per_s, size=256))
    out = tmp_path / "bench.json"
    result = cli("bench", *FAST, "pool=lp,max", "--out", str(out))
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert [row["pool"] for row in saved["rows"]] == ["lp", "max"]  # in the order asked for
    assert saved["threads"] == 1 and saved["overrides"] == [*FAST, "pool=lp,max"]
    assert all(row["infer_images_per_s"] > 0 and row["matmul_flops_per_s"] > 0 for row in saved["rows"])
    for name in ("lp", "max"):
        assert f"│ {name} " in result.output or f"\n {name} " in result.output, name  # a row of the table
    assert "avg" not in result.output and f"saved: {out}" in result.output


def test_bench_unknown_pool_is_a_usage_error():
    result = cli("bench", "pool=nope")
    assert result.exit_code == 2
    assert "Unknown pool 'nope'" in result.output


def test_each_dataset_picks_its_model_width_and_small_still_works():
    from poolbench.config import compose_config

    assert list(compose_config([]).model.channels) == [16, 32, 64]
    assert list(compose_config(["data=cifar10"]).model.channels) == [32, 64, 128, 256]
    narrow = compose_config(["data=cifar10", "model=small"]).model
    assert narrow.name == "small" and list(narrow.channels) == [16, 32, 64]
    assert list(compose_config(["data=cifar10", "model.channels=[8,16]"]).model.channels) == [8, 16]
