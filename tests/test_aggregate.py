import json
import statistics
from pathlib import Path

import pytest

from poolbench.aggregate import find_run_dirs, load_run, summarize, to_dict
from poolbench.errors import UsageError
from poolbench.stats import t_quantile


def write_run(run_dir: Path, pool: str, seed: int, acc: float, consistency: float = 0.9, infer: float = 1000.0,
              status: str = "complete", error: str | None = None, extra: tuple[str, ...] = (),
              params: int = 100, dataset: str = "shapes") -> Path:
    """A metrics.json as run_experiment writes it (DESIGN.md section 5)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "schema": 1, "status": status,
        "run": {"pool": pool, "dataset": dataset, "seed": seed, "device": "cpu",
                "overrides": [f"pool={pool}", f"seed={seed}", f"data={dataset}", *extra]},
        "accuracy": {}, "invariance": {}, "throughput": {}, "model": {}, "time": {}, "history": [],
    }
    if status == "complete":
        metrics.update({
            "accuracy": {"test": acc},
            "invariance": {"consistency": consistency, "flip_rate_1px": 1 - consistency, "max_shift": 2,
                           "shift_accuracy": {"0": acc, "1": acc - 0.01, "2": acc - 0.03}},
            "throughput": {"batch_size": 8, "infer_images_per_s": infer, "train_images_per_s": infer / 3},
            "model": {"params": params, "flops_per_image": 10 * params},
        })
    if error:
        metrics["error"] = error
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def make_sweep(root: Path) -> Path:
    """max vs avg (clearly better, 3 seeds each), global (one seed failed)."""
    for seed, (a_max, a_avg) in enumerate([(0.80, 0.90), (0.81, 0.91), (0.79, 0.92)]):
        write_run(root / f"max_{seed}", "max", seed, a_max, consistency=0.70 + seed / 100, infer=1000 + seed)
        write_run(root / f"avg_{seed}", "avg", seed, a_avg, consistency=0.72 + seed / 100, infer=1100 + seed)
    write_run(root / "global_0", "global", 0, 0.50, consistency=1.0, infer=100, params=50)
    write_run(root / "global_1", "global", 1, 0.52, consistency=1.0, infer=110, params=50)
    write_run(root / "global_2", "global", 2, 0, status="failed",
              error="RunError: Training diverged in epoch 1\nsecond line of detail")
    return root


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


def test_job_without_metrics_counts_as_failed_and_joins_its_configuration(tmp_path):
    make_sweep(tmp_path)
    killed = tmp_path / "avg_3" / ".hydra"
    killed.mkdir(parents=True)
    (killed / "config.yaml").write_text("pool: {name: avg}\ndata: {name: shapes}\nseed: 3\n")
    (killed / "overrides.yaml").write_text("- pool=avg\n- seed=3\n- data=shapes\n")
    summary = summarize([tmp_path])
    avg = next(row for row in summary.rows if row.config["pool"] == "avg")
    assert avg.n == 3 and len(avg.runs) == 4
    record = next(run for run in summary.failed if run.seed == 3)
    assert record.status == "failed" and "no metrics.json" in record.error


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


def test_finding_runs_skips_hidden_folders_and_rejects_empty_ones(tmp_path):
    make_sweep(tmp_path / "sweep")
    write_run(tmp_path / "sweep" / ".submitit" / "x", "max", 9, 0.1)
    assert len(find_run_dirs([tmp_path])) == 9
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no poolbench runs"):
        find_run_dirs([tmp_path / "empty"])
    with pytest.raises(UsageError, match="is not a directory"):
        find_run_dirs([tmp_path / "nope"])


def test_damaged_metrics_file_is_a_failed_job(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text("{not json")
    record = load_run(tmp_path / "r")
    assert record.status == "failed" and "damaged" in record.error


def test_interrupted_job_says_how_to_continue(tmp_path):
    path = write_run(tmp_path / "r", "max", 0, 0, status="interrupted")
    metrics = json.loads((path / "metrics.json").read_text())
    metrics["resume_with"] = f"train.resume={path}"
    (path / "metrics.json").write_text(json.dumps(metrics))
    record = load_run(path)
    assert record.status == "interrupted" and record.error == f"stopped before it finished; continue with train.resume={path}"
    assert [run.status for run in summarize([tmp_path]).failed] == ["interrupted"]
