"""The three sweep plots: PNGs drawn on figures of their own, pyplot never touched."""

import sys

import pytest
from helpers import make_sweep, write_run

from poolbench.sweep.aggregate import summarize
from poolbench.sweep.plots import PLOT_FILES, _ci, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_three_pngs_are_written_leaving_pyplot_alone(tmp_path):
    pyplot = sys.modules.get("matplotlib.pyplot")
    figures = pyplot.get_fignums() if pyplot is not None else []
    paths = write_plots(summarize([make_sweep(tmp_path / "sweep")]), tmp_path)
    assert [p.name for p in paths] == list(PLOT_FILES)
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    # a notebook that plots too keeps its backend and its figures: pyplot is neither imported nor used
    assert sys.modules.get("matplotlib.pyplot") is pyplot
    if pyplot is not None:
        assert pyplot.get_fignums() == figures


def test_single_seed_rows_plot_without_error_bars(tmp_path):
    write_run(tmp_path / "r" / "a", "avg", 0, 0.7)
    write_run(tmp_path / "r" / "b", "max", 0, 0.6)
    paths = write_plots(summarize([tmp_path / "r"]), tmp_path)
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)


def test_nothing_complete_means_no_plots(tmp_path):
    write_run(tmp_path / "r" / "a", "avg", 0, 0, status="failed", error="x")
    assert write_plots(summarize([tmp_path / "r"]), tmp_path) == []



def test_error_bars_stop_at_the_metric_valid_range(tmp_path):
    write_run(tmp_path / "r" / "0", "max", 0, 0.99, infer=10.0)
    write_run(tmp_path / "r" / "1", "max", 1, 1.0, infer=400.0)  # n = 2: t = 12.7, an interval past 100%
    row = summarize([tmp_path / "r"]).rows[0]
    accuracy = row.stats["accuracy"]
    below, above = _ci(accuracy, 100)
    assert accuracy["mean"] + accuracy["ci95"] > 1 and 100 * accuracy["mean"] + above[0] == pytest.approx(100.0)
    assert below[0] == pytest.approx(100 * accuracy["ci95"])
    speed = row.stats["infer_images_per_s"]
    assert speed["mean"] - speed["ci95"] < 0 and _ci(speed)[0][0] == speed["mean"]  # no negative whisker
