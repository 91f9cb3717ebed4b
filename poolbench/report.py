"""What a person sees: the config summary, the per-epoch progress bar, the results table."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(highlight=False)


def config_summary(cfg, device: str) -> str:
    tc = cfg.train
    return (f"[bold]poolbench[/] pool=[cyan]{cfg.pool.name}[/] data=[cyan]{cfg.data.name}[/] "
            f"model={cfg.model.name}{list(cfg.model.channels)} readout={cfg.model.readout} "
            f"epochs={tc.epochs} batch={tc.batch_size} lr={tc.lr} seed={cfg.seed} device={device}")


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


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def results_table(metrics: dict, title: str | None = None) -> Table:
    """One run's results, a row per metric (fits a narrow terminal)."""
    run, inv, speed = metrics["run"], metrics.get("invariance", {}), metrics.get("throughput", {})
    model, t = metrics.get("model", {}), metrics.get("time", {})
    table = Table(title=title or f"pool={run['pool']}  data={run['dataset']}  seed={run['seed']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("note")
    shift = f"shifts up to {inv.get('max_shift')} px, {inv.get('shift_mode')}"
    rows = [
        ("test accuracy", _pct(metrics.get("accuracy", {}).get("test")), "top-1, full test split"),
        ("consistency", _pct(inv.get("consistency")), f"same class for two random {shift}"),
        ("flip rate 1px", _pct(inv.get("flip_rate_1px")), "prediction changes under a 1-pixel shift"),
        ("inference", f"{speed.get('infer_images_per_s', 0):,.0f} img/s",
         f"MFU {_pct(speed.get('infer_mfu'))}, batch {speed.get('batch_size')}"),
        ("training", f"{speed.get('train_images_per_s', 0):,.0f} img/s",
         f"MFU {_pct(speed.get('train_mfu'))}, batch {speed.get('batch_size')}"),
        ("params", f"{model.get('params', 0):,}", ""),
        ("FLOPs / image", _si(model.get("flops_per_image", 0)), "forward, pooling counted"),
        ("time", f"{t.get('train_s', 0):.1f} s", f"training; {t.get('total_s', 0):.1f} s in all"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def shift_table(metrics: dict) -> Table:
    inv = metrics.get("invariance", {})
    shift_acc = inv.get("shift_accuracy", {})
    table = Table(title=f"accuracy under {inv.get('shift_mode', '')} shifts of d pixels")
    for d in shift_acc:
        table.add_column(f"d={d}", justify="right")
    table.add_row(*(_pct(v) for v in shift_acc.values()))
    return table
