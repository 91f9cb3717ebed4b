"""Grouping runs into configurations, statistics against the baseline, best values, Pareto front."""

import statistics

import pytest
from helpers import make_sweep, write_run

from poolbench.sweep.aggregate import summarize, to_dict
from poolbench.sweep.stats import t_quantile


def test_rows_have_mean_ci_and_n_over_seeds(tmp_path):
    summary = summarize([make_sweep(tmp_path)])
    rows = {row.config["pool"]: row for row in summary.rows}
    assert [row.config["pool"] for row in summary.rows] == ["max", "avg", "global"]
    acc = rows["avg"].stats["accuracy"]
    values = [0.90, 0.91, 0.92]
    assert acc["n"] == 3 and acc["mean"] == pytest.approx(statistics.fmean(values))
    assert acc["ci95"] == pytest.approx(t_quantile(0.975, 2) * statistics.stdev(values) / 3 ** 0.5)
    assert rows["global"].n == 2 and len(rows["global"].runs) == 3


def test_difference_from_max_and_significance(tmp_path):
    summary = summarize([make_sweep(tmp_path)])
    rows = {row.config["pool"]: row for row in summary.rows}
    avg = rows["avg"].stats["accuracy"]
    assert avg["diff"] == pytest.approx(0.11) and avg["significant"] and avg["p_value"] < 0.05
    assert "diff" not in rows["max"].stats["accuracy"]  # the baseline itself
    params = rows["global"].stats["params"]
    assert params["diff"] == -50 and params["p_value"] is None and not params["significant"]


def test_best_per_column_and_pareto_front(tmp_path):
    summary = summarize([make_sweep(tmp_path)])
    rows = {row.config["pool"]: row for row in summary.rows}
    assert "accuracy" in rows["avg"].best and "consistency" in rows["global"].best
    assert "params" in rows["global"].best and "flip_rate_1px" in rows["global"].best
    # avg beats max on accuracy, consistency and speed: max is dominated; global keeps consistency.
    assert rows["avg"].pareto and rows["global"].pareto and not rows["max"].pareto


def test_failed_job_is_listed_with_its_first_error_line(tmp_path):
    summary = summarize([make_sweep(tmp_path)])
    assert [run.path.name for run in summary.failed] == ["global_2"]
    failed = to_dict(summary)["failed"][0]
    assert failed["error"] == "RunError: Training diverged in epoch 1"
    assert failed["status"] == "failed" and failed["seed"] == 2 and failed["label"] == "global seed=2"


def test_job_without_metrics_counts_as_killed_and_joins_its_configuration(tmp_path):
    make_sweep(tmp_path)
    killed = tmp_path / "avg_3" / ".hydra"
    killed.mkdir(parents=True)
    (killed / "config.yaml").write_text("pool: {name: avg}\ndata: {name: shapes}\nseed: 3\n")
    (killed / "overrides.yaml").write_text("- pool=avg\n- seed=3\n- data=shapes\n")
    summary = summarize([tmp_path])
    avg = next(row for row in summary.rows if row.config["pool"] == "avg")
    assert avg.n == 3 and len(avg.runs) == 4
    record = next(run for run in summary.failed if run.seed == 3)
    assert record.status == "killed" and "no metrics.json" in record.error
    failed = {entry["label"]: entry for entry in to_dict(summary)["failed"]}
    assert failed["avg seed=3"]["status"] == "killed" and failed["global seed=2"]["status"] == "failed"


def test_configuration_is_every_override_but_the_seed(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / f"a{seed}", "max", seed, 0.8, extra=("train.lr=0.1",))
        write_run(tmp_path / f"b{seed}", "max", seed, 0.9, extra=("train.lr=0.2",))
        write_run(tmp_path / f"c{seed}", "avg", seed, 0.9, extra=("train.lr=0.2",))
    summary = summarize([tmp_path])
    labels = [row.label for row in summary.rows]
    assert labels == ["max train.lr=0.1", "max train.lr=0.2", "avg train.lr=0.2"]
    assert all(row.n == 2 for row in summary.rows)
    assert summary.common == {"data": "shapes", "device": "cpu"}
    avg = summary.rows[2].stats["accuracy"]
    assert avg["diff"] == pytest.approx(0.0)  # compared with max at the same lr, not lr=0.1


def test_a_seed_run_twice_counts_once_newest_complete_kept(tmp_path):
    old = write_run(tmp_path / "one" / "0", "max", 0, 0, status="failed", error="boom")
    new = write_run(tmp_path / "two" / "0", "max", 0, 0.8)
    summary = summarize([tmp_path / "one", tmp_path / "two"])
    row = summary.rows[0]
    assert row.n == 1 and [r.path for r in row.runs] == [new.resolve()]
    assert not summary.failed and any(str(old.resolve()) in note for note in summary.notes)


def test_single_run_directory_and_missing_baseline(tmp_path):
    write_run(tmp_path / "run", "avg", 0, 0.7)
    summary = summarize([tmp_path / "run"])
    assert summary.rows[0].n == 1 and summary.rows[0].stats["accuracy"]["ci95"] is None
    assert any("no complete pool=max" in note for note in summary.notes)
