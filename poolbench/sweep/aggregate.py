"""Sweep aggregation: find runs below some directories, group them, compute the comparison.

A *configuration* is everything that defines a run except its seed: the operator, the
dataset, the device and every other override. Each configuration's seeds give a mean with a
95% t-interval; each is compared with the `pool=max` configuration that differs from it only
in the operator: a paired t-test over the seeds both ran (same seed = same initialization
and data order), Welch's t-test where their seeds differ. Holm's correction runs over every
test of the table. Runs that did not complete are kept aside with the first line of their
error, so a failed job shows up instead of silently shrinking n.

Speed is ranked only from a quiet timing pass (timing.json, written by poolbench.timing after
a sweep's jobs: every configuration timed alone, interleaved rounds). Without one, the speed
columns show the jobs' own timings, measured while other jobs ran, and rank nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from poolbench.results import recipe_text
from poolbench.sweep.grid import BASELINE_POOL, SWEEP_POOLS
from poolbench.sweep.rundir import RunDir, find_run_dirs, read_run
from poolbench.sweep.stats import Estimate, estimate, holm_adjust, paired_p_value, welch_p_value

SIGNIFICANCE = 0.05
FEW_SEEDS = 3          # fewer complete seeds than this: the row is flagged (its interval is barely informative)
TIMING_FILE = "timing.json"


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
# Speed joins only when the quiet timing pass measured it (else the front is accuracy x consistency).
PARETO_METRICS = ("accuracy", "consistency", "infer_images_per_s")
VALID_RANGE = {"fraction": (0.0, 1.0), "rate": (0.0, None), "count": (0.0, None)}  # where CIs are clipped


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
    timing: dict | None = None   # this configuration's entry of the quiet timing pass, when there is one
    superseded: list[RunDir] = field(default_factory=list)  # a seed's older runs, left out (runs.csv lists them)

    @property
    def done(self) -> list[RunDir]:
        return [r for r in self.runs if r.complete]

    @property
    def n(self) -> int:
        return len(self.done)

    @property
    def few_seeds(self) -> bool:
        return 0 < self.n < FEW_SEEDS


@dataclass
class Summary:
    sources: list[str]
    rows: list[Row]
    failed: list[RunDir]
    notes: list[str]
    common: dict[str, str]        # configuration shared by every row (the table's caption)
    quiet_timing: bool = False    # speed columns come from the quiet timing pass (and rank rows)
    recipes: list[str] = field(default_factory=list)   # the training recipes and test protocols used
    tests: dict[str, int] = field(default_factory=dict)  # how many paired / Welch tests the table holds


# ---------------------------------------------------------------- reading metrics

def _value(metrics: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return float(metrics) if isinstance(metrics, (int, float)) and not isinstance(metrics, bool) else None


# ---------------------------------------------------------------- grouping and statistics

def summarize(paths: list[Path], timing_dirs: list[Path] = ()) -> Summary:
    """Find, read, group and compare every run below `paths`.

    The quiet timing pass is looked for in `paths` and `timing_dirs` (timing.json).
    """
    records = [read_run(d) for d in find_run_dirs(paths)]
    notes: list[str] = []
    groups: dict[tuple, list[RunDir]] = {}
    for record in records:
        groups.setdefault(config_key(record.config), []).append(record)
    _merge_unknown_device(groups)
    rows = []
    for runs in groups.values():
        kept, dropped = _one_run_per_seed(runs)
        for old in dropped:
            new = next(run for run in kept if run.seed == old.seed)
            notes.append(f"seed {old.seed} of {_plain(old.config)} ran twice: kept {new.path}, "
                         f"left out {old.path} ({old.status})")
        rows.append(Row(config=runs[0].config, runs=sorted(kept, key=lambda r: (r.seed is None, r.seed or 0)),
                        superseded=dropped))
    rows.sort(key=lambda row: _row_order(row.config))
    common = _label_rows(rows)
    complete_rows = [row for row in rows if row.done]
    quiet = _attach_timing(complete_rows, [*paths, *timing_dirs])
    by_key = {config_key(row.config): row for row in rows}
    for row in rows:
        baseline = by_key.get(config_key({**row.config, "pool": BASELINE_POOL}))
        row.has_baseline = baseline is not None and baseline is not row and bool(baseline.done)
        _fill_stats(row, baseline if row.has_baseline else None, quiet)
    tests = _correct_for_multiple_tests(rows)
    _mark_best(complete_rows, quiet)
    _mark_pareto(complete_rows, PARETO_METRICS if quiet else PARETO_METRICS[:2])
    failed = [run for row in rows for run in row.runs if not run.complete]
    if complete_rows and not any(row.config.get("pool") == BASELINE_POOL for row in complete_rows):
        notes.append(f"no complete pool={BASELINE_POOL} run: differences from the baseline are left out")
    if complete_rows and not quiet:
        notes.append("speed columns are the jobs' own timings (measured while other jobs ran): they rank "
                     "nothing; `poolbench compare --time` measures every configuration alone")
    notes += _hardware_notes(complete_rows)
    recipes = list(dict.fromkeys(recipe_text(run.protocol) for row in complete_rows for run in row.done
                                 if run.protocol))
    return Summary([str(Path(p)) for p in paths], rows, failed, notes, common, quiet, recipes, tests)


def _attach_timing(rows: list[Row], dirs: list[Path]) -> bool:
    """Give each row its quiet-timing entry; True when every row that has speed values got one.

    Rows are matched by configuration. One pass must cover all rows: speeds from separate
    passes (other moments, other load) would rank as if measured together.
    """
    passes = []
    for folder in dict.fromkeys(Path(d) for d in dirs):
        try:
            timing = json.loads((folder / TIMING_FILE).read_text())
            passes.append({config_key(entry["config"]): entry for entry in timing["configurations"]})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    for entries in passes:
        if rows and all(config_key(row.config) in entries for row in rows):
            for row in rows:
                row.timing = entries[config_key(row.config)]
            return True
    return False


def _hardware_notes(rows: list[Row]) -> list[str]:
    """A note when the runs mixed come from different machines (their speeds compare machines too)."""
    machines = {}
    for row in rows:
        for run in row.done:
            env = run.metrics.get("environment") or {}
            machine = " / ".join(str(env[k]) for k in ("cpu", "gpu") if env.get(k))
            if machine:
                machines.setdefault(machine, []).append(row.label)
    if len(machines) < 2:
        return []
    listed = "; ".join(f"{machine} ({', '.join(dict.fromkeys(labels))})" for machine, labels in machines.items())
    return [f"these runs come from different hardware: {listed}. Speed differences mix machines and operators."]


def _merge_unknown_device(groups: dict[tuple, list[RunDir]]) -> None:
    """A job killed before writing metrics.json has no device: it joins its finished siblings."""
    for key in [k for k, runs in groups.items() if "device" not in runs[0].config]:
        siblings = [k for k, runs in groups.items()
                    if "device" in runs[0].config
                    and config_key({c: v for c, v in runs[0].config.items() if c != "device"}) == key]
        if len(siblings) == 1:
            groups[siblings[0]].extend(groups.pop(key))


def config_key(config: dict) -> tuple:
    """What identifies a configuration (its rows, timing entries and baseline lookups)."""
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


def _seed_values(row: Row, metric: Metric) -> dict:
    """{seed (or run path when unknown): value} over the row's complete runs."""
    values = {}
    for run in row.done:
        value = _value(run.metrics, metric.path)
        if value is not None:
            values[run.seed if run.seed is not None else str(run.path)] = value
    return values


def _timed_values(row: Row, metric: Metric) -> dict:
    """{round: value} from the quiet timing pass (rounds were interleaved: round r pairs with round r)."""
    return dict(enumerate(float(v) for v in (row.timing or {}).get(metric.key, [])))


def _fill_stats(row: Row, baseline: Row | None, quiet: bool) -> None:
    for metric in METRICS:
        timed = metric.kind == "rate" and quiet
        source = _timed_values if timed else _seed_values
        mine = source(row, metric)
        if not mine:
            continue
        values = list(mine.values())
        est = estimate(values)
        entry = {"mean": est.mean, "std": est.std, "ci95": est.ci95, "n": est.n, "values": values,
                 **_clipped_interval(metric, est)}
        if metric.kind == "rate":
            entry["source"] = "quiet timing pass" if timed else "jobs (not ranked)"
        if baseline is not None:
            theirs = source(baseline, metric)
            if theirs:
                entry.update(_compare(mine, theirs, tested=timed or metric.kind != "rate"))
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
        row.shift_accuracy[d] = {"mean": est.mean, "ci95": est.ci95, "n": est.n,
                                 **_clipped_interval(METRICS[0], est)}


def _clipped_interval(metric: Metric, est: Estimate) -> dict:
    """The 95% interval's ends, clipped to the metric's valid range (a share stays in [0, 1])."""
    low, high = VALID_RANGE[metric.kind]
    half = est.ci95 or 0.0
    lower = est.mean - half if low is None else max(low, est.mean - half)
    upper = est.mean + half if high is None else min(high, est.mean + half)
    return {"ci_low": lower, "ci_high": upper}


def _compare(mine: dict, theirs: dict, tested: bool) -> dict:
    """Difference from the baseline, and its test: paired where both sides have the same keys
    (seeds, or timing rounds), Welch's otherwise. `tested` False: a difference without a test."""
    mean, base_mean = estimate(list(mine.values())).mean, estimate(list(theirs.values())).mean
    result = {"diff": mean - base_mean, "diff_relative": (mean - base_mean) / base_mean if base_mean else None,
              "test": None, "p_value": None, "p_holm": None, "significant": False}
    if not tested:
        return result
    if set(mine) == set(theirs):
        keys = sorted(mine, key=str)
        test, p = "paired", paired_p_value([mine[k] for k in keys], [theirs[k] for k in keys])
    else:
        test, p = "welch", welch_p_value(list(mine.values()), list(theirs.values()))
    return {**result, "test": test if p is not None else None, "p_value": p}


def _correct_for_multiple_tests(rows: list[Row]) -> dict[str, int]:
    """Holm's correction over every test in the table; `significant` is decided after it."""
    entries = [entry for row in rows for entry in row.stats.values() if entry.get("p_value") is not None]
    for entry, adjusted in zip(entries, holm_adjust([entry["p_value"] for entry in entries])):
        entry["p_holm"] = adjusted
        entry["significant"] = adjusted < SIGNIFICANCE
    counts = {"paired": 0, "welch": 0}
    for entry in entries:
        counts[entry["test"]] += 1
    return counts


def _mean(row: Row, key: str):
    return row.stats.get(key, {}).get("mean")


def _mark_best(rows: list[Row], quiet: bool) -> None:
    """Bold the best mean of each column only where its interval clears every other row's; where
    intervals overlap, every row tied with the best is bold. Unranked speeds get no bold."""
    for metric in METRICS:
        if metric.kind == "rate" and not quiet:
            continue
        ranked = [row for row in rows if _mean(row, metric.key) is not None]
        if not ranked:
            continue
        sign = 1 if metric.higher_is_better else -1
        leader = max(ranked, key=lambda row: sign * _mean(row, metric.key))
        for row in ranked:
            if row is leader or _overlaps(row.stats[metric.key], leader.stats[metric.key]):
                row.best.append(metric.key)


def _overlaps(a: dict, b: dict) -> bool:
    half_a, half_b = a.get("ci95") or 0.0, b.get("ci95") or 0.0
    return abs(a["mean"] - b["mean"]) <= half_a + half_b


def _mark_pareto(rows: list[Row], keys: tuple[str, ...]) -> None:
    """The front: rows no other row dominates. Another row dominates only when it is at least tied
    on every metric and clearly better on one, with ties judged as for bold (overlapping 95%
    intervals): a mean ahead by less than the noise knocks no row off the front."""
    metrics = [m for m in METRICS if m.key in keys]
    candidates = [row for row in rows if all(_mean(row, m.key) is not None for m in metrics)]

    def ahead(a: Row, b: Row, metric: Metric) -> int:  # 1: a clearly better, 0: tied, -1: clearly worse
        if _overlaps(a.stats[metric.key], b.stats[metric.key]):
            return 0
        better = _mean(a, metric.key) > _mean(b, metric.key)
        return 1 if better == metric.higher_is_better else -1

    for row in candidates:
        row.pareto = not any(
            all(ahead(other, row, m) >= 0 for m in metrics) and any(ahead(other, row, m) > 0 for m in metrics)
            for other in candidates if other is not row)


# ---------------------------------------------------------------- plain data for summary.json

def to_dict(summary: Summary) -> dict:
    def run_entry(run: RunDir) -> dict:
        return {"dir": str(run.path), "seed": run.seed, "status": run.status, "error": run.error}

    return {
        "schema": 1,
        "sources": summary.sources,
        "baseline": {"pool": BASELINE_POOL, "alpha": SIGNIFICANCE,
                     "test": "two-sided paired t-test over shared seeds (timing rounds for quiet speeds); "
                             "Welch's t-test where the seeds differ",
                     "correction": "Holm over every test of the table (p_holm); significant = p_holm < alpha",
                     "tests": summary.tests},
        "confidence_interval": "95%, Student's t over seeds (half-width); ci_low/ci_high clipped to the valid range",
        "best": "the best mean, and every row whose interval overlaps it (a tie)",
        "speed_source": "quiet timing pass" if summary.quiet_timing else "jobs' own timings (not ranked)",
        "recipes": summary.recipes,
        "metrics": [{"key": m.key, "label": m.label, "higher_is_better": m.higher_is_better} for m in METRICS],
        "pareto_metrics": list(PARETO_METRICS if summary.quiet_timing else PARETO_METRICS[:2]),
        "common": summary.common,
        "rows": [{"label": row.label, "configuration": row.config, "n": row.n, "few_seeds": row.few_seeds,
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
