"""Sweep plots: the trade-off, accuracy under shifts, throughput; each as PNG, PDF and SVG, written atomically.

Error bars are the same 95% confidence intervals as in the table, clipped to each metric's
valid range (a share stays within 0-100%, a rate above 0); a configuration with a single seed
is drawn without them. Legends sit to the right of the axes, outside them, and the saved image
grows to hold them (bbox_inches="tight"), so a long configuration label never covers the data.
While plotting, matplotlib's and its helpers' INFO lines ("generated new fontManager" when its
font cache is built) are held back: Hydra puts a console handler on the root logger at a
sweep's end, and they would land in the middle of the table's output.
"""

from __future__ import annotations

from pathlib import Path

from poolbench.report import quiet_third_party_logs
from poolbench.results import atomic_write
from poolbench.sweep.aggregate import Summary

PLOT_FILES = ("accuracy_vs_consistency.png", "shift_accuracy.png", "throughput.png")
PLOT_FORMATS = ("png", "pdf", "svg")  # PNG to look at, PDF and SVG to put in a paper or a page
SHORT_LABEL = 12  # longer configuration labels are numbered on the trade-off plot, named in its legend


def _figure(figsize):
    """A figure that belongs to no GUI backend: pyplot (and its global backend choice) is never
    touched, so importing poolbench changes nothing in a notebook that plots too."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _ci(entry: dict, scale: float = 1.0) -> list[list[float]]:
    """matplotlib's asymmetric [[below], [above]] error bar of one point: the clipped interval."""
    mean = entry["mean"]
    below = mean - entry.get("ci_low", mean - (entry.get("ci95") or 0.0))
    above = entry.get("ci_high", mean + (entry.get("ci95") or 0.0)) - mean
    return [[scale * max(0.0, below)], [scale * max(0.0, above)]]


def _cis(entries: list[dict], scale: float = 1.0) -> list[list[float]]:
    pairs = [_ci(entry, scale) for entry in entries]
    return [[p[0][0] for p in pairs], [p[1][0] for p in pairs]]


def figures(summary: Summary) -> list:
    """The three figures, in PLOT_FILES' order; none when no row has a complete run."""
    rows = [row for row in summary.rows if row.n and "accuracy" in row.stats]
    if not rows:
        return []
    return [draw(rows) for draw in (_trade_off, _shift_accuracy, _throughput)]


def write_plots(summary: Summary, out_dir: Path) -> list[Path]:
    """Each plot in out_dir in every PLOT_FORMATS (x.png, x.pdf, x.svg); rows without a complete run are
    left out of them."""
    paths = []
    with quiet_third_party_logs():  # covers matplotlib's import too: the font cache is built there
        for name, fig in zip(PLOT_FILES, figures(summary)):
            for fmt in PLOT_FORMATS:
                path = (Path(out_dir) / name).with_suffix(f".{fmt}")
                atomic_write(path, lambda handle, fig=fig, fmt=fmt: fig.savefig(
                    handle, format=fmt, dpi=120, bbox_inches="tight"))
                paths.append(path)
    return paths


def _legend(ax, **options):
    """Outside the axes, to their right: whatever its labels' length, it covers no data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **options)


def _finish(fig, ax, **labels):
    """Labels, a light grid and the legend beside the axes: what every line plot ends with."""
    ax.set(**labels)
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=7)
    return fig


def _point_names(rows) -> list[str]:
    """What each point of the trade-off plot is marked with: its label when every label is short,
    else its number (the legend pairs numbers and labels): a long label beside a point would cover others."""
    if all(len(row.label) <= SHORT_LABEL for row in rows):
        return [row.label for row in rows]
    return [str(i) for i in range(1, len(rows) + 1)]


def _trade_off(rows):
    fig, ax = _figure((7, 5))
    names = _point_names(rows)
    for row, name in zip(rows, names):
        acc, cons = row.stats["accuracy"], row.stats.get("consistency")
        if cons is None:
            continue
        prefix = f"{name}: " if name != row.label else ""
        ax.errorbar(100 * cons["mean"], 100 * acc["mean"], xerr=_ci(cons, 100), yerr=_ci(acc, 100),
                    fmt="o", capsize=4, label=f"{prefix}{row.label} (n={row.n})")
        ax.annotate(name, (100 * cons["mean"], 100 * acc["mean"]), textcoords="offset points",
                    xytext=(5, 5), fontsize=8, clip_on=True)  # clipped: never onto the legend beside
    return _finish(fig, ax, xlabel="consistency under random shifts (%)", ylabel="test accuracy (%)",
                   title="accuracy vs shift consistency (mean ± 95% CI over seeds)")


def _shift_accuracy(rows):
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure((7, 5))
    for i, row in enumerate(rows):
        if not row.shift_accuracy:
            continue
        shifts = sorted(row.shift_accuracy, key=int)
        means = [100 * row.shift_accuracy[d]["mean"] for d in shifts]
        errors = _cis([row.shift_accuracy[d] for d in shifts], 100)
        nudge = 0.04 * (i - (len(rows) - 1) / 2)  # side by side, so error bars do not hide each other
        ax.errorbar([int(d) + nudge for d in shifts], means, yerr=errors, marker="o", capsize=3, label=row.label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(fig, ax, xlabel="shift d (pixels, mean of the four axis directions)", ylabel="accuracy (%)",
                   title="accuracy under shifts of d pixels")


def _throughput(rows):
    fig, ax = _figure((max(6, 1.2 * len(rows)), 5))
    width = 0.4
    positions = range(len(rows))
    for offset, key, name in ((-width / 2, "infer_images_per_s", "inference"),
                              (width / 2, "train_images_per_s", "training")):
        entries = [row.stats.get(key, {"mean": 0.0}) for row in rows]
        ax.bar([p + offset for p in positions], [e["mean"] for e in entries], width,
               yerr=_cis(entries), capsize=3, label=name)
    ax.set_xticks(list(positions), [row.label for row in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("images / s")
    ax.set_title("throughput per configuration (mean ± 95% CI over seeds)")
    _legend(ax)
    ax.grid(axis="y", alpha=0.3)
    return fig
