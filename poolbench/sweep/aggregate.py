"""Sweep aggregation: find runs below some directories, group them, compute the comparison.

A *configuration* is everything that defines a run except its seed: the operator, the
dataset, the device and every other override. Each configuration's seeds give a mean with a
95% t-interval; each is compared with the `pool=max` configuration that differs from it only
in the operator (Welch's t-test). Runs that did not complete are kept aside with the first
line of their error, so a failed job shows up instead of silently shrinking n.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from poolbench.sweep.grid import BASELINE_POOL, SWEEP_POOLS
from poolbench.sweep.rundir import RunDir, find_run_dirs, read_run
from poolbench.sweep.stats import Estimate, estimate, welch_p_value

SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    path: tuple[str, ...]     # where it sits in metrics.json
    higher_is_better: bool
    kind: str                 # fraction (shown in %), rate (img/s) or count


METRICS = [
    Metric("accuracy", "acc", ("accuracy", "test"), True, "fraction"),
    Metric("consistency", "consist", ("invariance", "consistency"), True, "fraction"),
    Metric("flip_rate_1px", "flip 1px", ("invariance", "flip_rate_1px"), False, "fraction"),
    Metric("infer_images_per_s", "infer img/s", ("throughput", "infer_images_per_s"), True, "rate"),
    Metric("train_images_per_s", "train img/s", ("throughput", "train_images_per_s"), True, "rate"),
    Metric("params", "params", ("model", "params"), False, "count"),
    Metric("flops_per_image", "FLOPs", ("model", "flops_per_image"), False, "count"),
]
# The trade-off a user picks from: no other row is at least as good on all three and better on one.
PARETO_METRICS = ("accuracy", "consistency", "infer_images_per_s")


@dataclass
class Row:
    """One configuration: its runs and, per metric, the estimate and the test against max."""

    config: dict[str, str]
    runs: list[RunDir]
    label: str = ""
    stats: dict[str, dict] = field(default_factory=dict)
    shift_accuracy: dict[str, dict] = field(default_factory=dict)
    best: list[str] = field(default_factory=list)
    pareto: bool = False
    has_baseline: bool = False
    flops_uncounted: list[str] = field(default_factory=list)  # ops the FLOP counter could not count

    @property
    def done(self) -> list[RunDir]:
        return [r for r in self.runs if r.complete]

    @property
    def n(self) -> int:
        return len(self.done)


@dataclass
class Summary:
    sources: list[str]
    rows: list[Row]
    failed: list[RunDir]
    notes: list[str]
    common: dict[str, str]        # configuration shared by every row (the table's caption)


# ---------------------------------------------------------------- reading metrics

def _value(metrics: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return float(metrics) if isinstance(metrics, (int, float)) and not isinstance(metrics, bool) else None


# ---------------------------------------------------------------- grouping and statistics

def summarize(paths: list[Path]) -> Summary:
    """Find, read, group and compare every run below `paths`."""
    records = [read_run(d) for d in find_run_dirs(paths)]
    notes: list[str] = []
    groups: dict[tuple, list[RunDir]] = {}
    for record in records:
        groups.setdefault(_config_key(record.config), []).append(record)
    _merge_unknown_device(groups)
    rows = []
    for runs in groups.values():
        kept, dropped = _one_run_per_seed(runs)
        for old in dropped:
            new = next(run for run in kept if run.seed == old.seed)
            notes.append(f"seed {old.seed} of {_plain(old.config)} ran twice: kept {new.path}, "
                         f"left out {old.path} ({old.status})")
        rows.append(Row(config=runs[0].config, runs=sorted(kept, key=lambda r: (r.seed is None, r.seed or 0))))
    rows.sort(key=lambda row: _row_order(row.config))
    common = _label_rows(rows)
    by_key = {_config_key(row.config): row for row in rows}
    for row in rows:
        baseline = by_key.get(_config_key({**row.config, "pool": BASELINE_POOL}))
        row.has_baseline = baseline is not None and baseline is not row and bool(baseline.done)
        _fill_stats(row, baseline if row.has_baseline else None)
    complete_rows = [row for row in rows if row.done]
    _mark_best(complete_rows)
    _mark_pareto(complete_rows)
    failed = [run for row in rows for run in row.runs if not run.complete]
    if complete_rows and not any(row.config.get("pool") == BASELINE_POOL for row in complete_rows):
        notes.append(f"no complete pool={BASELINE_POOL} run: differences from the baseline are left out")
    return Summary([str(Path(p)) for p in paths], rows, failed, notes, common)


def _merge_unknown_device(groups: dict[tuple, list[RunDir]]) -> None:
    """A job killed before writing metrics.json has no device: it joins its finished siblings."""
    for key in [k for k, runs in groups.items() if "device" not in runs[0].config]:
        siblings = [k for k, runs in groups.items()
                    if "device" in runs[0].config
                    and _config_key({c: v for c, v in runs[0].config.items() if c != "device"}) == key]
        if len(siblings) == 1:
            groups[siblings[0]].extend(groups.pop(key))


def _config_key(config: dict) -> tuple:
    return tuple(sorted(config.items()))


def _one_run_per_seed(runs: list[RunDir]):
    """A seed that ran twice (a rerun, or two sweeps compared) counts once: the newest complete run."""
    by_seed: dict = {}
    dropped = []
    for run in sorted(runs, key=lambda r: (r.complete, r.mtime)):
        if run.seed is None:
            by_seed[("path", run.path)] = run
            continue
        if run.seed in by_seed:
            dropped.append(by_seed[run.seed])
        by_seed[run.seed] = run
    return list(by_seed.values()), dropped


def _row_order(config: dict) -> tuple:
    pool = config.get("pool", "")
    rank = SWEEP_POOLS.index(pool) if pool in SWEEP_POOLS else len(SWEEP_POOLS)
    rest = sorted((k, v) for k, v in config.items() if k != "pool")
    return (rest, rank, pool)


def _plain(config: dict) -> str:
    """pool=max data=shapes -> "max data=shapes": the operator needs no key."""
    return " ".join(v if k == "pool" else f"{k}={v}" for k, v in config.items())


def _label_rows(rows: list[Row]) -> dict[str, str]:
    """Label each row by what differs between rows; what all share becomes the caption."""
    keys = list(dict.fromkeys(k for row in rows for k in row.config))
    common = {}
    for key in keys:
        values = {row.config.get(key) for row in rows}
        if len(values) == 1 and key != "pool":
            common[key] = values.pop()
    for row in rows:
        row.label = _plain({k: v for k, v in row.config.items() if k not in common}) or _plain(row.config)
    return common


def _fill_stats(row: Row, baseline: Row | None) -> None:
    for metric in METRICS:
        values = [v for v in (_value(r.metrics, metric.path) for r in row.done) if v is not None]
        if not values:
            continue
        est = estimate(values)
        entry = {"mean": est.mean, "std": est.std, "ci95": est.ci95, "n": est.n, "values": values}
        if baseline is not None:
            base = [v for v in (_value(r.metrics, metric.path) for r in baseline.done) if v is not None]
            if base:
                base_mean = estimate(base).mean
                p = welch_p_value(values, base)
                entry.update(diff=est.mean - base_mean,
                             diff_relative=(est.mean - base_mean) / base_mean if base_mean else None,
                             p_value=p, significant=p is not None and p < SIGNIFICANCE)
        row.stats[metric.key] = entry
    row.flops_uncounted = sorted({op for run in row.done
                                  for op in run.metrics.get("model", {}).get("flops_uncounted") or []})
    shifts: dict[str, list[float]] = {}
    for run in row.done:
        for d, acc in (run.metrics.get("invariance", {}).get("shift_accuracy") or {}).items():
            if acc is not None:
                shifts.setdefault(str(d), []).append(float(acc))
    for d in sorted(shifts, key=int):
        est: Estimate = estimate(shifts[d])
        row.shift_accuracy[d] = {"mean": est.mean, "ci95": est.ci95, "n": est.n}


def _mean(row: Row, key: str):
    return row.stats.get(key, {}).get("mean")


def _mark_best(rows: list[Row]) -> None:
    for metric in METRICS:
        means = [m for m in (_mean(row, metric.key) for row in rows) if m is not None]
        if not means:
            continue
        best = max(means) if metric.higher_is_better else min(means)
        for row in rows:
            if _mean(row, metric.key) == best:
                row.best.append(metric.key)


def _mark_pareto(rows: list[Row]) -> None:
    points = {id(row): [_mean(row, k) for k in PARETO_METRICS] for row in rows}
    candidates = [row for row in rows if None not in points[id(row)]]
    for row in candidates:
        mine = points[id(row)]
        row.pareto = not any(
            all(o >= m for o, m in zip(points[id(other)], mine)) and any(o > m for o, m in zip(points[id(other)], mine))
            for other in candidates if other is not row)


# ---------------------------------------------------------------- plain data for summary.json

def to_dict(summary: Summary) -> dict:
    def run_entry(run: RunDir) -> dict:
        return {"dir": str(run.path), "seed": run.seed, "status": run.status, "error": run.error}

    return {
        "schema": 1,
        "sources": summary.sources,
        "baseline": {"pool": BASELINE_POOL, "test": "Welch's t-test, two-sided", "alpha": SIGNIFICANCE},
        "confidence_interval": "95%, Student's t over seeds (half-width)",
        "metrics": [{"key": m.key, "label": m.label, "higher_is_better": m.higher_is_better} for m in METRICS],
        "pareto_metrics": list(PARETO_METRICS),
        "common": summary.common,
        "rows": [{"label": row.label, "configuration": row.config, "n": row.n,
                  "seeds": [r.seed for r in row.done], "failed": len(row.runs) - row.n,
                  "metrics": row.stats, "shift_accuracy": row.shift_accuracy,
                  "best": row.best, "pareto": row.pareto, "flops_uncounted": row.flops_uncounted,
                  "runs": [run_entry(r) for r in row.runs]}
                 for row in summary.rows],
        "failed": [{"label": _failed_label(summary, run), **run_entry(run)} for run in summary.failed],
        "notes": summary.notes,
    }


def _failed_label(summary: Summary, run: RunDir) -> str:
    for row in summary.rows:
        if run in row.runs:
            return f"{row.label} seed={run.seed}"
    return str(run.path)
