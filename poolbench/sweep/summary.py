"""The comparison a sweep ends with: one rich table, and summary.csv/.md/.json beside the runs.

Every view shows the same numbers: per configuration the mean +- 95% CI half-width over seeds
(n, flagged below 3), the difference from pool=max (* when significant after Holm's correction;
paired t-test over shared seeds, W marks Welch's where the seeds differ), the best value per
column in bold (all tied rows when intervals overlap) and a star on the Pareto front. The
caption names the recipe and where the speed columns come from.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from poolbench.report import UNCOUNTED_MARK, FittedTables, si
from poolbench.report import console as default_console
from poolbench.results import write_json, write_text
from poolbench.sweep.aggregate import FEW_SEEDS, METRICS, PARETO_METRICS, SIGNIFICANCE, Metric, Row, Summary, to_dict
from poolbench.sweep.grid import BASELINE_POOL
from poolbench.sweep.tidy import RUNS_FILE, runs_csv_text

SUMMARY_FILES = ("summary.csv", "summary.md", "summary.json", RUNS_FILE)
PARETO_MARK = "★"
WELCH_MARK = "W"      # after a difference: tested with Welch's t-test (the two rows' seeds differ)


def _number(metric: Metric, value: float) -> str:
    if metric.kind == "fraction":
        return f"{100 * value:.2f}"
    if metric.kind == "rate":
        return f"{value:,.0f}"
    return si(value)


def mean_text(metric: Metric, entry: dict, sep: str = " ", row: Row | None = None) -> str:
    text = _number(metric, entry["mean"])
    if metric.key == "flops_per_image" and row is not None and row.flops_uncounted:
        text += UNCOUNTED_MARK
    if entry.get("ci95"):  # None for n = 1; 0 for seed-independent values such as params
        text += f"{sep}±{_number(metric, entry['ci95'])}"
    elif sep == "\n":
        text += "\n"  # keeps the difference on the third line of every cell
    return text


def diff_text(row: Row, metric: Metric, entry: dict) -> str:
    """vs max: percentage points for fractions, relative change for rates and counts."""
    if "diff" not in entry:
        return ""
    if metric.kind == "fraction":
        text = f"{100 * entry['diff']:+.2f}"
    elif entry.get("diff_relative") is not None:
        relative = 100 * entry["diff_relative"]
        text = f"{relative:+.0f}%" if abs(relative) >= 10 else f"{relative:+.1f}%"
    else:
        text = f"{entry['diff']:+g}"
    return text + ("*" if entry.get("significant") else "") + (WELCH_MARK if entry.get("test") == "welch" else "")


def header(metric: Metric) -> str:
    return f"{metric.label} %" if metric.kind == "fraction" else metric.label


def row_label(row: Row) -> str:
    return row.label + (" (baseline)" if row.config.get("pool") == BASELINE_POOL else "")


def n_text(row: Row) -> str:
    failed = len(row.runs) - row.n
    return f"{row.n}" + (" (few)" if row.few_seeds else "") + (f" +{failed} failed" if failed else "")


def one_recipe(recipes: list[str]) -> str:
    """The recipes of a table in one line: where they differ only in some values (a sweep or search over
    train.lr), those words read "(per row)" once, instead of the whole line repeated for every row."""
    words = [recipe.split(" ") for recipe in recipes]
    if len(recipes) == 1 or len({len(w) for w in words}) != 1:
        return " | ".join(recipes)
    merged = [column[0] if len(set(column)) == 1 else "(per row)" for column in zip(*words)]
    return " ".join(merged)


def caption(summary: Summary) -> str:
    shared = " ".join(f"{k}={v}" for k, v in summary.common.items())
    pareto = " / ".join(m.label for m in METRICS if m.key in (PARETO_METRICS if summary.quiet_timing
                                                               else PARETO_METRICS[:2]))
    welch = f", {WELCH_MARK} = Welch's t-test where the seeds differ" if summary.tests.get("welch") else ""
    speed = ("speed from the quiet timing pass (each configuration alone, interleaved rounds; ± over rounds)"
             if summary.quiet_timing else "speed: the jobs' own timings, measured in parallel, not ranked")
    parts = [
        shared,
        "recipe: " + one_recipe(summary.recipes) if summary.recipes else "",
        f"mean±95% CI over n seeds (n<{FEW_SEEDS} flagged: too few for a reliable interval)",
        f"then the difference from the pool={BASELINE_POOL} row with the rest of the configuration equal "
        f"(percentage points for %, relative change otherwise"
        + (f"; * = p < {SIGNIFICANCE} after Holm's correction over the table's {sum(summary.tests.values())} "
           f"tests, paired t-test over shared seeds{welch})" if sum(summary.tests.values()) else "; no tests)")
        if any(row.has_baseline for row in summary.rows) else "",
        "bold = best in its column, and every row whose interval overlaps it (a tie)",
        speed,
        f"{PARETO_MARK} = on the Pareto front of {pareto} (no other row at least tied on all and clearly "
        "better on one)",
        f"FLOPs{UNCOUNTED_MARK}: a lower bound, some ops could not be counted (summary.json lists them)"
        if any(row.flops_uncounted for row in summary.rows) else "",
    ]
    return "; ".join(part for part in parts if part)


PARETO_COLUMN = "pareto"
# Where a table too wide for the console splits first: quality, then speed and size, then the star.
COLUMN_GROUPS = [["accuracy", "consistency", "flip_rate_1px"],
                 ["infer_images_per_s", "train_images_per_s", "params", "flops_per_image"], [PARETO_COLUMN]]


def rich_table(summary: Summary, title: str | None = "comparison", columns: list[str] | None = None,
               with_caption: bool = True) -> Table:
    """The configuration column and `columns` (default: every metric, then the Pareto star).

    Narrow cells (mean, ±CI and difference on three lines) so 80 columns fit six operators. Only
    the configuration column wraps (at spaces, down to its longest word); numbers never wrap, and
    a console too narrow for the whole table gets it in parts (comparison_table).
    """
    columns = columns if columns is not None else [column for group in COLUMN_GROUPS for column in group]
    metrics = {metric.key: metric for metric in METRICS}
    table = Table(title=title, caption=caption(summary) if with_caption else None, show_lines=True,
                  box=box.SIMPLE_HEAD, caption_justify="left", collapse_padding=True, pad_edge=False)
    label_width = max([len(word) for r in summary.rows for word in r.label.split()] + [8])
    table.add_column("config", overflow="fold", min_width=label_width)
    for key in columns:
        if key == PARETO_COLUMN:
            table.add_column(PARETO_MARK, justify="center", no_wrap=True)
            continue
        words = header(metrics[key]).split()
        table.add_column("\n".join(words), justify="right", no_wrap=True, min_width=max(len(w) for w in words))
    for row in summary.rows:
        cells = [(PARETO_MARK if row.pareto else "") if key == PARETO_COLUMN else _cell(row, metrics[key])
                 for key in columns]
        table.add_row(_config_cell(row), *cells)
    return table


def _cell(row: Row, metric: Metric) -> str:
    """Mean (bold when best), ±CI and the difference from the baseline, one to a line."""
    entry = row.stats.get(metric.key)
    if entry is None:
        return "[red]failed[/]" if not row.n else "n/a"
    text = mean_text(metric, entry, sep="\n", row=row)
    text = f"[bold green]{text}[/]" if metric.key in row.best else text
    diff = diff_text(row, metric, entry)
    return text + (f"\n[dim]{diff}[/]" if diff else "")


def _config_cell(row: Row) -> str:
    failed = len(row.runs) - row.n
    n_cell = f"n={row.n}" + (" [yellow](few)[/]" if row.few_seeds else "") + (
        f"\n[red]{failed} failed[/]" if failed else "")
    name = row.label + ("\n[dim]baseline[/]" if row.config.get("pool") == BASELINE_POOL else "")
    return f"{name}\n{n_cell}"


def comparison_table(summary: Summary, title: str = "comparison") -> FittedTables:
    """The table as printed: whole where the console is wide enough, else quality columns, then speed
    and size (each part with the configuration column), the caption under the last."""

    def build(columns: list[str], index: int, count: int) -> Table:
        return rich_table(summary, title if index == 0 else None, columns, with_caption=index == count - 1)

    return FittedTables(build, COLUMN_GROUPS, note="; summary.md holds the whole table")


def failed_lines(summary: Summary) -> list[str]:
    """One line per job that did not complete: what it was, its error's first line, where it is."""
    return [f"[red]{item['status']}[/] {item['label']}: {item['error']} [dim]({item['dir']})[/]"
            for item in to_dict(summary)["failed"]]


def markdown(summary: Summary, title: str = "comparison") -> str:
    headers = ["configuration", "n", *(header(m) for m in METRICS), "Pareto"]
    lines = [f"# {title}", "", caption(summary) + ".", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in summary.rows:
        cells = [row_label(row), n_text(row)]
        for metric in METRICS:
            entry = row.stats.get(metric.key)
            if entry is None:
                cells.append("failed" if not row.n else "n/a")
                continue
            text = mean_text(metric, entry, row=row)
            text = f"**{text}**" if metric.key in row.best else text
            diff = diff_text(row, metric, entry)
            cells.append(text + (f" ({diff})" if diff else ""))
        cells.append(PARETO_MARK if row.pareto else "")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    failed = to_dict(summary)["failed"]
    if failed:
        lines += ["", "## Jobs that did not complete", "", "| configuration | seed | status | error | directory |",
                  "|---|---|---|---|---|"]
        lines += [f"| {f['label']} | {f['seed']} | {f['status']} | {(f['error'] or '').replace('|', '/')} "
                  f"| {f['dir']} |"
                  for f in failed]
    if summary.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in summary.notes]
    return "\n".join(lines) + "\n"


def csv_text(summary: Summary) -> str:
    """One line per configuration, then one per job that did not complete (status, error)."""
    keys = list(dict.fromkeys(k for row in summary.rows for k in row.config))
    fields = ["label", *keys, "status", "n", "failed", "seeds"]
    for metric in METRICS:
        fields += [f"{metric.key}_{part}" for part in
                   ("mean", "ci95", "std", "diff", "test", "p_value", "p_holm", "significant", "best")]
    fields += ["pareto", "error", "dir"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in summary.rows:
        line = {"label": row.label, **row.config, "status": "complete" if row.n else "failed", "n": row.n,
                "failed": len(row.runs) - row.n, "seeds": " ".join(str(r.seed) for r in row.done),
                "pareto": row.pareto}
        for metric in METRICS:
            entry = row.stats.get(metric.key, {})
            for part in ("mean", "ci95", "std", "diff", "test", "p_value", "p_holm", "significant"):
                line[f"{metric.key}_{part}"] = entry.get(part, "")
            line[f"{metric.key}_best"] = metric.key in row.best
        writer.writerow({k: ("" if v is None else v) for k, v in line.items()})
    for item in to_dict(summary)["failed"]:
        writer.writerow({"label": item["label"], "status": item["status"], "seeds": item["seed"],
                         "error": item["error"], "dir": item["dir"]})
    return out.getvalue()


def write_summary_files(summary: Summary, out_dir: Path, title: str = "comparison") -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in SUMMARY_FILES]
    write_text(paths[0], csv_text(summary))
    write_text(paths[1], markdown(summary, title))
    write_json(paths[2], to_dict(summary))
    write_text(paths[3], runs_csv_text(summary))
    return paths


def show(summary: Summary, title: str = "comparison", out: Console = default_console) -> None:
    """The table (in parts on a narrow console), any failed jobs and the notes."""
    out.print(comparison_table(summary, title))
    if summary.failed:
        out.print("jobs that did not complete (rerun the same sweep into the same directory to retry only these):")
        for line in failed_lines(summary):
            out.print(line, soft_wrap=True)
    for note in summary.notes:
        out.print(f"[yellow]note:[/] {note}", soft_wrap=True)


def wrote_lines(paths: list[Path]) -> list[str]:
    """"wrote DIR/x.png (and .pdf, .svg)": one line per file, a plot's other formats on its PNG's line."""
    groups: list[list[Path]] = []
    for path in paths:
        if groups and groups[-1][0].suffix == ".png" and path.with_suffix(".png") == groups[-1][0]:
            groups[-1].append(path)
        else:
            groups.append([path])
    return [f"wrote [bold]{same[0]}[/]" + (f" (and {', '.join(p.suffix for p in same[1:])})" if same[1:] else "")
            for same in groups]


def publish(summary: Summary, out_dir: Path, title: str = "comparison", out: Console = default_console,
            quiet: bool = False) -> list[Path]:
    """Print the table (unless quiet), write the summary files and plots, print their paths (unless quiet)."""
    from poolbench.sweep.plots import write_plots  # matplotlib loads only here

    if not quiet:
        show(summary, title, out)
    paths = write_summary_files(summary, out_dir, title)
    try:
        paths += write_plots(summary, out_dir)
    except ImportError:
        if not quiet:
            out.print("[yellow]note:[/] plots need matplotlib: pip install 'poolbench[sweep]'", soft_wrap=True)
    for line in [] if quiet else wrote_lines(paths):
        out.print(line, soft_wrap=True)
    return paths
