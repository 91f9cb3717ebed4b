import csv
import io
import json
import os
import re

import pytest
from helpers import make_sweep, write_run
from rich.console import Console

from poolbench.sweep.aggregate import METRICS, summarize
from poolbench.sweep.summary import (
    PARETO_MARK,
    SUMMARY_FILES,
    caption,
    comparison_table,
    diff_text,
    markdown,
    mean_text,
    publish,
    rich_table,
    write_summary_files,
)
from poolbench.sweep.tidy import RUNS_FILE


def test_three_files_hold_the_same_numbers(tmp_path):
    summary = summarize([make_sweep(tmp_path / "sweep")])
    paths = write_summary_files(summary, tmp_path / "out")
    assert [p.name for p in paths] == list(SUMMARY_FILES)
    data = json.loads(paths[2].read_text())
    avg = next(row for row in data["rows"] if row["configuration"]["pool"] == "avg")
    assert avg["n"] == 3 and avg["seeds"] == [0, 1, 2] and avg["metrics"]["accuracy"]["significant"]
    rows = list(csv.DictReader(io.StringIO(paths[0].read_text())))
    by_label = {row["label"]: row for row in rows}
    assert float(by_label["avg"]["accuracy_mean"]) == avg["metrics"]["accuracy"]["mean"]
    assert by_label["avg"]["accuracy_significant"] == "True" and by_label["avg"]["pareto"] == "True"
    failed = by_label["global seed=2"]
    assert failed["status"] == "failed" and failed["error"] == "RunError: Training diverged in epoch 1"
    md = paths[1].read_text()
    assert "**91.00 ±2.48** (+11.00*)" in md  # best accuracy in bold, difference from max, significant
    assert "| global seed=2 | 2 | failed | RunError: Training diverged in epoch 1 |" in md


def test_rich_table_fits_80_columns_and_shows_failures(tmp_path):
    summary = summarize([make_sweep(tmp_path / "sweep")])
    out = Console(width=80, record=True, file=io.StringIO())
    publish(summary, tmp_path / "out", title="t", out=out)
    text = out.export_text()
    assert "…" not in text.split("wrote")[0].split("mean±95% CI")[0]  # no cell was cut short
    assert "1 failed" in text and "Training diverged in epoch 1" in text
    for name in (*SUMMARY_FILES, "accuracy_vs_consistency.png", "shift_accuracy.png", "throughput.png"):
        assert f"wrote {tmp_path / 'out' / name}" in text.replace("\n", "")
    assert rich_table(summary).row_count == 3 and "baseline" in markdown(summary) + text


# ---------------------------------------------------------------- the table on narrow consoles

WIDTHS = ("[16,32,64,128]", "[32,64,128,256]")  # model.channels: a label word of 30 characters


def wide_sweep(root):
    """Six operators at two widths, n = 2, speeds past 100,000 img/s: wider than 80 columns."""
    for pool in ("max", "avg", "strided", "global", "fractional", "attention"):
        for i, channels in enumerate(WIDTHS):
            for seed in (0, 1):
                write_run(root / f"{pool}_{i}_{seed}", pool, seed, 0.42 + 0.1 * seed + 0.3 * (pool == "avg"),
                          infer=123456.0 + 50000 * seed, params=1234567, extra=(f"model.channels={channels}",))
    return root


def cell_lines(summary) -> set[str]:
    """Every line of every cell the table holds: each must be printed whole."""
    lines = set()
    for row in summary.rows:
        for metric in METRICS:
            entry = row.stats[metric.key]
            lines.update(mean_text(metric, entry, sep="\n", row=row).split())
            lines.add(diff_text(row, metric, entry))
    return lines - {""}


@pytest.mark.parametrize("width", [80, 120])
def test_table_keeps_every_column_and_number_whole_at_80_and_120_columns(tmp_path, width):
    summary = summarize([wide_sweep(tmp_path)])
    out = Console(width=width, record=True, file=io.StringIO())
    table = comparison_table(summary, "t")
    parts = table.parts(out)
    out.print(table)
    text = out.export_text()
    assert sorted(key for part in parts for key in part) == sorted([m.key for m in METRICS] + ["pareto"])
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= width
    printed = set(text.split())
    assert cell_lines(summary) <= printed  # every mean, ±CI and difference, uncut
    assert {"acc", "consist", "flip", "1px", "infer", "train", "img/s", "params", "FLOPs", PARETO_MARK} <= printed
    assert text.count(PARETO_MARK) > sum(row.pareto for row in summary.rows)  # the column, not only the caption
    assert " ".join(caption(summary).split()) in " ".join(text.split())  # the caption too, word for word
    if width == 80:  # 80 columns: quality first, then speed and size, and a line that says so
        assert len(parts) == 2 and parts[0][:3] == ["accuracy", "consistency", "flip_rate_1px"]
        assert "split in 2 parts to fit 80 columns; summary.md holds the whole table" in " ".join(text.split())
    else:
        assert len(parts) == 1 and "split" not in text


def test_a_narrow_console_wraps_labels_at_spaces_before_it_splits(tmp_path):
    for pool in ("max", "fractional"):
        for lr in ("0.05", "0.1"):
            write_run(tmp_path / f"{pool}{lr}", pool, 0, 0.5, infer=123456.0, extra=(f"train.lr={lr}",))
    summary = summarize([tmp_path])
    out = Console(width=80, record=True, file=io.StringIO())
    table = comparison_table(summary)
    assert table.parts(out) == [[m.key for m in METRICS] + ["pareto"]]  # one table: the labels wrap
    out.print(table)
    text = out.export_text()
    assert re.search(r"\n fractional +50\.00 .*\n train\.lr=0\.05 ", text) and "…" not in text  # wrapped at its space


# ---------------------------------------------------------------- runs.csv

PROTOCOL = {  # as results.run_protocol records it
    "train": {"epochs": 2, "batch_size": 64, "optimizer": "SGD Nesterov", "lr": 0.2, "schedule": "one-cycle linear",
              "warmup_fraction": 0.25, "momentum": 0.9, "weight_decay": 5e-4, "label_smoothing": 0.1,
              "augment": {"shift": 0, "flip": False}, "amp": "auto"},
    "eval": {"draws": 1, "max_shift": 3, "shift_pairs": 1, "shift_mode": "circular", "seed": 1234},
}


def test_runs_csv_has_one_row_per_run_and_reads_with_pandas_as_is(tmp_path):
    pandas = pytest.importorskip("pandas")
    sweep = make_sweep(tmp_path / "sweep")
    for seed, acc in ((0, 0.5), (1, 0.6)):
        write_run(sweep / f"lr_{seed}", "max", seed, acc, extra=("train.lr=0.2",))
    metrics = json.loads((sweep / "lr_0" / "metrics.json").read_text())
    metrics.update(protocol=PROTOCOL,
                   environment={"cpu": "test cpu", "threads": 2, "git": {"commit": "abc", "dirty": False}},
                   time={"train_s": 1.5})
    (sweep / "lr_0" / "metrics.json").write_text(json.dumps(metrics))
    write_run(sweep / "lr_0_older", "max", 0, 0.1, extra=("train.lr=0.2",))  # a seed that ran twice
    os.utime(sweep / "lr_0_older" / "metrics.json", (0, 0))
    summary = summarize([sweep])
    (path,) = [p for p in write_summary_files(summary, tmp_path / "out") if p.name == RUNS_FILE]
    table = pandas.read_csv(path)
    assert len(table) == 12 and table["run_dir"].is_unique  # every run directory found, the older one too
    assert list(table.columns[:9]) == ["run_dir", "status", "error", "label", "superseded", "seed", "pool", "data",
                                       "device"]
    assert table["superseded"].dtype == bool and table["superseded"].sum() == 1
    for column in ("seed", "train.lr", "accuracy.test", "invariance.consistency", "invariance.shift_accuracy.2",
                   "throughput.infer_images_per_s", "model.params", "time.train_s", "protocol.train.lr",
                   "environment.threads"):
        assert pandas.api.types.is_numeric_dtype(table[column]), column
    failed = table[table["status"] == "failed"].iloc[0]
    assert failed["error"] == "RunError: Training diverged in epoch 1" and failed["seed"] == 2
    assert pandas.isna(failed["accuracy.test"])
    avg = table[(table["pool"] == "avg") & (table["seed"] == 1)].iloc[0]
    assert avg["accuracy.test"] == 0.91 and avg["invariance.shift_accuracy.1"] == pytest.approx(0.90)
    assert avg["label"] == "avg" and pandas.isna(avg["train.lr"])  # the row it counts in; no such override
    lr0 = table[table["run_dir"] == str((sweep / "lr_0").resolve())].iloc[0]
    assert lr0["train.lr"] == 0.2 and lr0["environment.cpu"] == "test cpu" and not lr0["environment.git.dirty"]
    assert "history" not in " ".join(table.columns)  # lists stay in metrics.json


def test_recipes_that_differ_in_a_value_are_named_once():
    from poolbench.sweep.summary import one_recipe

    recipes = ["1 epochs, batch 64, SGD Nesterov lr 0.11 one-cycle linear", "1 epochs, batch 64, SGD Nesterov lr "
               "0.14 one-cycle linear"]
    assert one_recipe(recipes) == "1 epochs, batch 64, SGD Nesterov lr (per row) one-cycle linear"
    assert one_recipe(recipes[:1]) == recipes[0]
    assert one_recipe(["2 epochs", "3 epochs, flip"]) == "2 epochs | 3 epochs, flip"  # different shapes: both
