"""`poolbench bench`: every operator's throughput and MFU, no data, no training."""

import json

import pytest
from helpers import cli

from poolbench import bench
from poolbench.bench import bench_operator, operator_config, split_pool_override
from poolbench.errors import UsageError
from poolbench.pools import pool_names

FAST = ["data=shapes", "threads=1", "eval.throughput.batch_size=16", "eval.throughput.warmup=1",
        "eval.throughput.iters=2", "model.channels=[4,8]"]


def stub_matmul_rate(monkeypatch):
    """The matmul rate's own tests are test_speed's; a complete run measures the real one (test_experiment)."""
    from poolbench.speed import MatmulRate

    monkeypatch.setattr(bench, "matmul_rate", lambda device, dtype: MatmulRate(
        1.234e11, str(dtype).removeprefix("torch."), "best of 5 rounds (stub)"))


def test_pool_override_narrows_the_table():
    assert split_pool_override(["pool=max,avg", "threads=1"]) == (["max", "avg"], ["threads=1"])
    assert split_pool_override(["threads=1"])[0] == pool_names()
    with pytest.raises(UsageError, match="Unknown pool 'nope'"):
        split_pool_override(["pool=nope"])


def test_bench_operator_counts_and_times_one_network(monkeypatch):
    import torch

    stub_matmul_rate(monkeypatch)
    row = bench_operator(operator_config("strided", FAST), torch.device("cpu"))
    assert row["pool"] == "strided" and row["params"] > 0 and row["flops_per_image"] > 0
    assert row["infer_images_per_s"] > 0 and row["train_images_per_s"] > 0 and row["matmul_flops_per_s"] == 1.234e11
    assert row["matmul_dtype"] == "float32" and row["matmul_method"] == "best of 5 rounds (stub)"
    # under bf16 autocast the denominator is the bf16 rate, as in a run (both ask runtime.compute_dtype)
    from poolbench.runtime import compute_dtype

    amp = {amp: compute_dtype(torch.device("cpu"), amp) for amp in (True, False)}
    assert amp == {True: torch.bfloat16, False: torch.float32}
    assert row["train_mfu"] == pytest.approx(3 * row["flops_per_image"] * row["train_images_per_s"]
                                             / row["matmul_flops_per_s"])


def test_bench_command_prints_the_operators_asked_for_and_saves_json(tmp_path, monkeypatch):
    # (No pool=: every operator, test_pool_override_narrows_the_table.)
    stub_matmul_rate(monkeypatch)
    out = tmp_path / "bench.json"
    result = cli("bench", *FAST, "pool=lp,max", "--out", str(out))
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert [row["pool"] for row in saved["rows"]] == ["lp", "max"]  # in the order asked for
    assert saved["threads"] == 1 and saved["overrides"] == [*FAST, "pool=lp,max"]
    assert all(row["infer_images_per_s"] > 0 and row["matmul_flops_per_s"] > 0 for row in saved["rows"])
    assert saved["environment"]["threads"] == 1 and saved["environment"]["torch"] == saved["torch"]
    assert {"poolbench", "git", "cpu", "gpu", "started"} <= set(saved["environment"])
    # the caption says what every MFU is divided by
    assert ("dense float32 matmul rate, 123 GFLOP/s (mm GFLOP/s: best of 5 rounds (stub))"
            in " ".join(result.output.replace("│", " ").split()))
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
    cifar = compose_config(["data=cifar10"]).model
    assert list(cifar.channels) == [16, 48, 96, 192] and cifar.whiten is True
    narrow = compose_config(["data=cifar10", "model=small"]).model
    assert narrow.name == "small" and list(narrow.channels) == [16, 32, 64] and narrow.whiten is False
    assert list(compose_config(["data=cifar10", "model.channels=[8,16]"]).model.channels) == [8, 16]


def test_the_bench_table_fits_80_columns_without_cutting_a_header_or_number():
    import torch
    from rich.console import Console

    from poolbench.config import compose_config

    row = {"pool": "stochastic", "params": 29178, "flops_per_image": 3.97e6, "flops_uncounted": [],
           "infer_images_per_s": 8716.0, "infer_mfu": 0.199, "train_images_per_s": 2933.0, "train_mfu": 0.201,
           "matmul_flops_per_s": 1.74e11, "matmul_dtype": "float32", "matmul_method": "best of 5 rounds"}
    table = bench.bench_table([row], compose_config(FAST), torch.device("cpu"))
    console = Console(width=80)
    with console.capture() as captured:
        console.print(table)
    text = captured.get()
    assert "…" not in text
    words = " ".join(text.replace("│", " ").replace("┃", " ").split())
    for shown in ("stochastic", "29,178", "3.97", "8,716", "19.9%", "2,933", "20.1%", "174", "GFLOP", "MFU"):
        assert shown in words
