import csv
import io
import json

from helpers import make_sweep
from rich.console import Console

from poolbench.sweep.aggregate import summarize
from poolbench.sweep.summary import SUMMARY_FILES, markdown, publish, rich_table, write_summary_files


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
