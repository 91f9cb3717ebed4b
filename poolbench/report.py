"""What a person sees: the config summary, the per-epoch progress bar, the results table.

Tables fit the console they are printed on (a pipe is 80 columns): one too wide for it is
stacked in parts (FittedTables), never cut short ("42…") or left without a column.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

console = Console(highlight=False)
# Libraries whose INFO lines ("generated new fontManager") would reach a console handler someone
# put on the root logger (Hydra does, for its own process) while poolbench plots.
THIRD_PARTY_LOGGERS = ("matplotlib", "fontTools", "PIL")


@contextlib.contextmanager
def quiet_third_party_logs(names: tuple[str, ...] = THIRD_PARTY_LOGGERS, level: int = logging.WARNING):
    """Within the block, these loggers pass on only `level` and above; their own levels come back after.

    Scoped to the block (the plotting path) rather than set at import: a user's own logging setup,
    in a notebook that imports poolbench, is theirs outside it.
    """
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() < level:
            logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, before):
            logger.setLevel(old)


def pack_columns(groups: list[list[str]], fits: Callable[[list[str]], bool]) -> list[list[str]]:
    """The columns in as few parts as `fits` allows, in order: whole groups stay together where they
    fit, and a group is split only when it alone is too wide. Every column lands in some part."""
    everything = [column for group in groups for column in group]
    if fits(everything):
        return [everything]
    parts, current = [], []
    for group in groups:
        if fits(current + group):
            current = current + group
            continue
        if current:
            parts.append(current)
            current = []
        for column in group:
            if current and not fits(current + [column]):
                parts.append(current)
                current = []
            current.append(column)
    return parts + [current] if current else parts


class FittedTables:
    """A table that fits the console it is printed on: whole when wide enough, else stacked in parts,
    each repeating the leading columns `build` puts first, and a dim line saying so.

    Rich shrinks a table wider than the console by cutting cells ("42…") and dropping the last
    columns; measuring each candidate part first (rich's own Measurement) means it never has to.
    A column that may wrap (no_wrap False) with a min_width counts at that width: rich wraps it
    before it touches the others (a label wraps at its spaces; numbers should be no_wrap).
    `build(columns, index, count)` makes part `index` of `count` (title on the first, caption on
    the last); `note` ends the line that says the table was split (None: no such line).
    """

    def __init__(self, build: Callable[[list[str], int, int], Table], groups: list[list[str]],
                 note: str | None = ""):
        self.build, self.groups, self.note = build, groups, note

    def parts(self, console: Console, options=None) -> list[list[str]]:
        options = options or console.options
        width = options.max_width

        def fits(columns: list[str]) -> bool:
            table = self.build(columns, 0, 1)
            for column in table.columns:
                if not column.no_wrap and column.min_width:
                    column.max_width = column.min_width
            # measured unbounded: Measurement.get clamps to the width it is given
            return Measurement.get(console, options.update_width(1 << 20), table).maximum <= width

        return pack_columns(self.groups, fits)

    def __rich_console__(self, console: Console, options):
        parts = self.parts(console, options)
        for index, columns in enumerate(parts):
            yield self.build(columns, index, len(parts))
        if len(parts) > 1 and self.note is not None:
            yield Text(f"(split in {len(parts)} parts to fit {options.max_width} columns{self.note})", style="dim")


def config_summary(cfg, device: str) -> str:
    tc = cfg.train
    return (f"[bold]poolbench[/] pool=[cyan]{cfg.pool.name}[/] data=[cyan]{cfg.data.name}[/] "
            f"model={model_label(cfg.model)} "
            f"epochs={tc.epochs} batch={tc.batch_size} lr={tc.lr} seed={cfg.seed} device={device}")


def model_label(model_cfg) -> str:
    """small[16, 32, 64] readout=auto; resnet20; or the user's backbone by its target."""
    name = model_cfg.get("name") if model_cfg.get("name") != "custom" else model_cfg.get("_target_")
    extra = (f"{list(model_cfg.channels)}" if "channels" in model_cfg else "") + \
        (f" readout={model_cfg.readout}" if "readout" in model_cfg else "")
    return f"{name}{extra}"


class TrainProgress:
    """One rich progress bar per epoch, showing the running loss and images/s."""

    def __init__(self, out: Console = console):
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[result]}"), TimeElapsedColumn(),
            console=out, transient=False,
        )
        self.task = None

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        # the loss is read from the device every few steps: until the first read, show a dash
        self.task = self.progress.add_task("train", total=steps, epoch=f"{epoch}/{epochs}",
                                           loss="  -   ", speed="- img/s", result="")

    def update(self, step: int, loss: float, images_per_s: float) -> None:
        self.progress.update(self.task, completed=step, loss=f"{loss:.4f}", speed=f"{images_per_s:,.0f} img/s")

    def end_epoch(self, loss: float, test_accuracy: float) -> None:
        self.progress.update(self.task, loss=f"{loss:.4f}", result=f"test acc {test_accuracy:.2%}")


UNCOUNTED_MARK = "+?"  # after a FLOP count that misses ops the counter has no formula for (a lower bound)


def flops_text(flops: float, uncounted: list[str] | None, spec: str = ".3g") -> str:
    """A FLOP count in SI units, marked when some ops could not be counted."""
    return si(flops, spec) + (UNCOUNTED_MARK if uncounted else "")


def si(value: float, spec: str = ".3g", binary: bool = False, space: str = "") -> str:
    """1234567 -> "1.23M": the one SI formatter (params, FLOPs, sizes; binary=True for bytes)."""
    base = 1024 if binary else 1000
    for unit, power in (("G", 3), ("M", 2), ("k", 1)):
        if abs(value) >= base**power:
            return f"{value / base**power:{spec}}{space}{unit}"
    return f"{value:.0f}{space}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def mfu_denominator(speed: dict) -> str:
    """" of 139 GFLOP/s measured float32 matmul": what an MFU was divided by (this machine's
    measured dense matmul rate, not a vendor peak); empty where metrics.json does not say."""
    rate = speed.get("matmul_flops_per_s")
    if not rate:
        return ""
    dtype = speed.get("matmul_dtype")
    return f" of {si(rate, '.3g', space=' ')}FLOP/s measured {dtype + ' ' if dtype else ''}matmul"


def results_table(metrics: dict, title: str | None = None) -> Table:
    """One run's results, a row per metric (fits a narrow terminal)."""
    run, inv, speed = metrics["run"], metrics.get("invariance", {}), metrics.get("throughput", {})
    model, t = metrics.get("model", {}), metrics.get("time", {})
    table = Table(title=title or f"pool={run['pool']}  data={run['dataset']}  seed={run['seed']}")
    table.add_column("metric")
    table.add_column("value", justify="right", overflow="fold")  # never "…": a narrow console wraps it
    table.add_column("note")
    shift = f"shifts up to {inv.get('max_shift')} px, {inv.get('shift_mode')}"
    of = mfu_denominator(speed)
    rows = [
        ("test accuracy", _pct(metrics.get("accuracy", {}).get("test")), "top-1, full test split"
         + (f", softmax over {inv['draws']} seeded draws" if (inv.get("draws") or 1) > 1 else "")),
        ("consistency", _pct(inv.get("consistency")), f"same class for two random {shift}"),
        ("flip rate 1px", _pct(inv.get("flip_rate_1px")), "prediction changes under a 1-pixel shift"),
        ("inference", f"{speed.get('infer_images_per_s', 0):,.0f} img/s",
         f"MFU {_pct(speed.get('infer_mfu'))}{of}, batch {speed.get('batch_size')}"),
        ("training", f"{speed.get('train_images_per_s', 0):,.0f} img/s",
         f"MFU {_pct(speed.get('train_mfu'))}{of}, batch {speed.get('batch_size')}"),
        ("params", f"{model.get('params', 0):,}", ""),
        ("FLOPs / image", flops_text(model.get("flops_per_image", 0), model.get("flops_uncounted"), ".2f"),
         "forward, pooling counted" + (f"; not counted: {', '.join(model['flops_uncounted'])}"
                                       if model.get("flops_uncounted") else "")),
        ("time", f"{t.get('train_s', 0):.1f} s", f"training; {t.get('total_s', 0):.1f} s in all"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def shift_table(metrics: dict) -> FittedTables:
    """Accuracy per shift d, one column each: stacked in parts where the shifts outnumber the width
    (d = 0..8 at 80 columns)."""
    inv = metrics.get("invariance", {})
    shift_acc = {str(d): v for d, v in inv.get("shift_accuracy", {}).items()}

    def build(columns: list[str], index: int, count: int) -> Table:
        table = Table(title=f"accuracy under {inv.get('shift_mode', '')} shifts of d pixels" if index == 0 else None)
        for d in columns:
            table.add_column(f"d={d}", justify="right", no_wrap=True)
        table.add_row(*(_pct(shift_acc[d]) for d in columns))
        return table

    return FittedTables(build, [[d] for d in shift_acc], note=None)  # the d= headers say it
