"""runs.csv: one row per run directory, the tidy table for pandas (`pandas.read_csv("runs.csv")`).

summary.csv holds one line per configuration (means, intervals, tests); the values behind them,
seed by seed, live in each run's metrics.json. This file puts every run found on one line: where
it is, how it ended, every override as its own column, and every scalar of metrics.json under its
dotted path (`accuracy.test`, `invariance.shift_accuracy.0`, `throughput.infer_images_per_s`,
`protocol.train.lr`, `environment.cpu`, ...). Lists (the training history, uncounted ops) stay in
metrics.json. A missing value is an empty cell, so numeric columns read as numbers (NaN where a
run has none) and True/False columns as booleans where every run has them.
"""

from __future__ import annotations

import csv
import io

from poolbench.results import flatten
from poolbench.sweep.aggregate import Row, Summary
from poolbench.sweep.rundir import RunDir

RUNS_FILE = "runs.csv"
LEADING = ["run_dir", "status", "error", "label", "superseded", "seed", "pool", "data", "device"]
_RESERVED = LEADING[:6]  # not configuration keys: an override by one of these names is renamed
# The parts of metrics.json flattened into columns, in this order; `run` minus what LEADING already says.
SECTIONS = ("accuracy", "invariance", "throughput", "model", "time", "run", "protocol", "environment")
_RUN_SHOWN = {"pool", "dataset", "seed", "device", "overrides"}


def configuration(run: RunDir) -> dict:
    """The run's configuration columns: pool, data, device and every override but the seed (a seed column
    of its own); an override named like one of LEADING's columns gets an `override.` prefix."""
    return {(f"override.{key}" if key in _RESERVED else key): value for key, value in run.config.items()}


def measured(run: RunDir) -> dict:
    """Every scalar metrics.json holds under SECTIONS, by dotted path (`run` minus what LEADING says)."""
    out = {}
    for section in SECTIONS:
        values = run.metrics.get(section)
        if section == "run" and isinstance(values, dict):
            values = {k: v for k, v in values.items() if k not in _RUN_SHOWN}
        if section == "protocol" and values is None:
            values = run.protocol  # runs older than metrics.json's protocol: from their .hydra/config.yaml
        out.update({f"{section}.{path}": value for path, value in flatten(values or {}).items()
                    if not isinstance(value, (list, tuple))})  # scalars only: lists stay in metrics.json
    return out


def runs_of(summary: Summary) -> list[tuple[RunDir, Row, bool]]:
    """Every run directory the summary found, row by row: (run, its row, superseded)."""
    return [(run, row, superseded)
            for row in summary.rows
            for runs, superseded in ((row.runs, False), (row.superseded, True))
            for run in runs]


def runs_csv_text(summary: Summary) -> str:
    """LEADING, then the configuration columns, then the metrics' columns by section, each as first met."""
    runs = runs_of(summary)
    configs = [configuration(run) for run, _, _ in runs]
    metrics = [measured(run) for run, _, _ in runs]
    config_keys = [k for k in dict.fromkeys(k for c in configs for k in c) if k not in LEADING]
    metric_keys = sorted((k for k in dict.fromkeys(k for m in metrics for k in m) if k not in config_keys),
                         key=lambda key: SECTIONS.index(key.split(".", 1)[0]))  # stable: first met within a section
    fields = LEADING + config_keys + metric_keys
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for (run, row, superseded), config, values in zip(runs, configs, metrics):
        record = {"run_dir": str(run.path), "status": run.status, "error": run.error, "label": row.label,
                  "superseded": superseded, "seed": run.seed, **config,
                  **{k: v for k, v in values.items() if k not in config_keys}}
        writer.writerow({key: ("" if value is None else value) for key, value in record.items()})
    return out.getvalue()
