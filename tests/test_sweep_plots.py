"""The three sweep plots: PNG, PDF and SVG drawn on figures of their own, pyplot never touched; clipped
error bars, legends beside the data, no third-party log lines."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_sweep, write_run

from poolbench.sweep.aggregate import summarize
from poolbench.sweep.plots import PLOT_FILES, PLOT_FORMATS, _ci, figures, write_plots

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF", "svg": b"<?xml"}
LONG = "model.note=a-long-override-value-that-differs-by-row"  # with the operator: labels past 40 characters


def test_every_plot_is_written_as_png_pdf_and_svg_leaving_pyplot_alone(tmp_path):
    pyplot = sys.modules.get("matplotlib.pyplot")
    figs = pyplot.get_fignums() if pyplot is not None else []
    paths = write_plots(summarize([make_sweep(tmp_path / "sweep")]), tmp_path)
    assert [p.name for p in paths] == [Path(name).with_suffix(f".{fmt}").name
                                       for name in PLOT_FILES for fmt in PLOT_FORMATS]
    for path in paths:
        assert path.read_bytes().startswith(MAGIC[path.suffix[1:]]) and path.stat().st_size > 5000, path
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left behind
    # a notebook that plots too keeps its backend and its figures: pyplot is neither imported nor used
    assert sys.modules.get("matplotlib.pyplot") is pyplot
    if pyplot is not None:
        assert pyplot.get_fignums() == figs


def test_single_seed_rows_plot_without_error_bars(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    write_run(tmp_path / "r" / "a", "avg", 0, 0.7)
    write_run(tmp_path / "r" / "b", "max", 0, 0.6)
    for fig in figures(summarize([tmp_path / "r"])):
        FigureCanvasAgg(fig).draw()  # what saving does, without the files (the test above writes them)


def test_nothing_complete_means_no_plots(tmp_path):
    write_run(tmp_path / "r" / "a", "avg", 0, 0, status="failed", error="x")
    assert write_plots(summarize([tmp_path / "r"]), tmp_path) == []


def two_seeds_far_apart(root: Path, long_labels: bool = False) -> Path:
    """n = 2 with values far apart: t = 12.7 makes intervals run past 0-100% and below 0 img/s."""
    for pool in ("max", "avg", "fractional"):
        extra = (f"{LONG}-{pool}",) if long_labels else ()
        write_run(root / f"{pool}0", pool, 0, 0.99, consistency=0.02, infer=10.0, extra=extra)
        write_run(root / f"{pool}1", pool, 1, 0.40, consistency=0.98, infer=400.0, extra=extra)
    return root


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


def test_axes_stay_in_range_when_intervals_would_not(tmp_path):
    """n = 2: once an accuracy axis from -200% to 350% and whiskers below 0 img/s."""
    summary = summarize([two_seeds_far_apart(tmp_path)])
    assert summary.rows[0].stats["accuracy"]["ci95"] > 1  # the raw interval is wider than 0-100%
    trade_off, shifts, speed = figures(summary)
    for ax, axes in ((trade_off.axes[0], "xy"), (shifts.axes[0], "y")):
        for limits in [ax.get_xlim()] * ("x" in axes) + [ax.get_ylim()]:
            assert -5.5 <= limits[0] and limits[1] <= 105.5, limits
    ax = speed.axes[0]
    assert ax.get_ylim()[0] >= 0
    whiskers = [segment for container in ax.containers if getattr(container, "errorbar", None)
                for collection in container.errorbar.lines[2] for segment in collection.get_segments()]
    assert whiskers and min(y for segment in whiskers for _, y in segment) >= 0


def test_legends_with_long_labels_stay_off_the_data(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    summary = summarize([two_seeds_far_apart(tmp_path, long_labels=True)])
    assert all(len(row.label) > 40 for row in summary.rows)
    for fig in figures(summary):
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        (ax,) = fig.axes
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer)), fig.axes[0].get_title()
    # on the trade-off plot the points carry numbers, and the legend says which is which
    texts = [t.get_text() for t in figures(summary)[0].axes[0].texts]
    assert texts == ["1", "2", "3"]
    first = figures(summary)[0].axes[0].get_legend().get_texts()[0].get_text()
    assert first == f"1: {summary.rows[0].label} (n=2)"


def test_plotting_keeps_third_party_info_lines_off_a_console_handler(tmp_path, monkeypatch):
    """Hydra leaves a console handler on the root logger at a sweep's end; matplotlib's INFO line when it
    builds its font cache ("generated new fontManager") once landed there. The guard covers the drawing
    (where matplotlib is imported) and the saving, and gives the loggers their levels back."""
    from poolbench.sweep import plots

    seen = []
    handler = logging.Handler(logging.INFO)
    handler.emit = seen.append
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.INFO)
    root.addHandler(handler)
    draw = plots._trade_off

    def draw_and_log(rows):
        logging.getLogger("matplotlib.font_manager").info("generated new fontManager")
        logging.getLogger("fontTools.subset").info("maxp pruned")
        return draw(rows)

    monkeypatch.setattr(plots, "_trade_off", draw_and_log)
    monkeypatch.setattr(plots, "PLOT_FORMATS", ("png",))  # the guard is the point here, not the formats
    try:
        write_plots(summarize([make_sweep(tmp_path / "sweep")]), tmp_path)
        logging.getLogger("poolbench.test").info("our own line")  # after the block: logging as it was
    finally:
        root.removeHandler(handler)
    assert [record.getMessage() for record in seen] == ["our own line"]
    assert logging.getLogger("matplotlib").level == logging.NOTSET


@pytest.mark.slow  # ~5 s: a fresh interpreter importing torch and building matplotlib's font cache
def test_a_fresh_font_cache_prints_nothing(tmp_path):
    script = (
        "import logging, sys; from pathlib import Path\n"
        "logging.basicConfig(level=logging.INFO, format='[HYDRA] %(message)s')  # as Hydra's console handler\n"
        "sys.path.insert(0, sys.argv[1]); from helpers import make_sweep\n"
        "from poolbench.sweep.aggregate import summarize; from poolbench.sweep.plots import write_plots\n"
        "out = Path(sys.argv[2]); print(len(write_plots(summarize([make_sweep(out / 's')]), out)), end='')\n"
    )
    env = {"MPLCONFIGDIR": str(tmp_path / "mpl"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert (result.stdout, result.stderr) == ("9", ""), result
    assert list((tmp_path / "mpl").glob("fontlist-*.json"))  # the cache was built in this run, quietly
