"""Sweeps end to end: the default grid, launchers, failures, reruns, compare."""

import json
import os
import statistics
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import run_cli
from poolbench import sweep
from poolbench.sweep import DEFAULT_GRID, with_default_grid

# Smaller than conftest.TINY: 18 jobs must stay a few seconds each on a shared 2-core machine.
SWEEP_TINY = ["data=shapes", "data.train_size=192", "data.test_size=64", "train.epochs=1", "eval.shift_pairs=1",
              "eval.max_shift=1", "eval.throughput.warmup=1", "eval.throughput.iters=1",
              "eval.throughput.batch_size=8", "model.channels=[4,8]"]
OUTPUT_FILES = ["summary.csv", "summary.md", "summary.json",
                "accuracy_vs_consistency.png", "shift_accuracy.png", "throughput.png"]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _metrics(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))]


def test_default_grid_is_filled_in_only_for_keys_not_given():
    assert with_default_grid(["data=shapes"]) == [f"pool={DEFAULT_GRID['pool']}", "seed=0,1,2", "data=shapes"]
    assert with_default_grid(["pool=max,avg"]) == ["seed=0,1,2", "pool=max,avg"]
    assert with_default_grid(["seed=0,1,2,3,4", "pool=max"]) == ["seed=0,1,2,3,4", "pool=max"]


@pytest.mark.parametrize("launcher,cores,expected", [
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}, 4, 1),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, 8, 4),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 16}, 4, 1),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
      "cpus_per_task": 3}, 8, 3),
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8, 8),
])
def test_auto_threads_share_the_cores_between_parallel_jobs(monkeypatch, launcher, cores, expected):
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setattr(sweep, "_cores", lambda: cores)
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: OmegaConf.create({"launcher": launcher})))
    assert sweep.auto_threads() == expected


@pytest.fixture(scope="module")
def default_sweep(tmp_path_factory):
    """`poolbench sweep` with its default grid (6 operators x 3 seeds), two joblib workers."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    result = run_cli("sweep", *SWEEP_TINY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     f"hydra.sweep.dir={sweep_dir}", timeout=600)
    return sweep_dir, result


def test_default_sweep_ends_in_table_files_and_plots(default_sweep):
    sweep_dir, result = default_sweep
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = _metrics(sweep_dir)
    assert len(metrics) == 18 and all(m["status"] == "complete" for m in metrics)
    # Two parallel jobs split the cores (threads=auto) instead of each taking all of them.
    assert {m["run"]["threads"] for m in metrics} == {max(1, _cores() // min(2, _cores()))}
    for name in OUTPUT_FILES:
        assert (sweep_dir / name).is_file(), name
        assert f"wrote {sweep_dir / name}" in result.stdout.replace("\n", "")
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert [row["configuration"]["pool"] for row in summary["rows"]] == DEFAULT_GRID["pool"].split(",")
    for row in summary["rows"]:
        pool = row["configuration"]["pool"]
        accuracies = [m["accuracy"]["test"] for m in metrics if m["run"]["pool"] == pool]
        assert row["n"] == 3 and row["seeds"] == [0, 1, 2]
        assert row["metrics"]["accuracy"]["mean"] == pytest.approx(statistics.fmean(accuracies))
    for pool in DEFAULT_GRID["pool"].split(","):
        assert f"\n {pool} " in result.stdout  # a row of the printed table


def test_compare_mixes_run_and_sweep_directories(default_sweep, tmp_path):
    sweep_dir, _ = default_sweep
    # A single run of the same configuration with another seed, as `poolbench run ... seed=7` leaves it
    # (built from a sweep job's file to save a training run).
    job = next(m for m in _metrics(sweep_dir) if m["run"]["pool"] == "max")
    job["run"]["seed"] = 7
    job["run"]["overrides"] = [o for o in job["run"]["overrides"] if not o.startswith("seed=")] + ["seed=7"]
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "metrics.json").write_text(json.dumps(job))
    result = run_cli("compare", str(sweep_dir), str(tmp_path / "one"), "-o", str(tmp_path / "cmp"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    max_row = next(row for row in summary["rows"] if row["configuration"]["pool"] == "max")
    assert max_row["n"] == 4 and max_row["seeds"] == [0, 1, 2, 7]  # the single run joins its configuration
    assert len(summary["rows"]) == 6 and not summary["failed"]
    assert all((tmp_path / "cmp" / name).is_file() for name in OUTPUT_FILES)


def test_compare_of_a_folder_without_runs_exits_2(tmp_path):
    result = run_cli("compare", str(tmp_path))
    assert result.returncode == 2 and "holds no poolbench runs" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_failed_job_is_listed_and_a_rerun_only_retries_it(tmp_path):
    args = [*SWEEP_TINY, "threads=1", "pool=avg", "seed=0", "train.lr=0.05,1e30", f"hydra.sweep.dir={tmp_path}"]
    first = run_cli("sweep", *args)
    assert first.returncode == 1, first.stdout[-3000:]
    assert "1 of 2 jobs did not complete" in first.stdout or "Training diverged" in first.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["n"] for row in summary["rows"]] == [1, 0]
    (failed,) = summary["failed"]
    assert failed["status"] == "failed" and failed["error"].startswith("Training diverged")
    assert "\n" not in failed["error"]
    good = next(Path(row["runs"][0]["dir"]) for row in summary["rows"] if row["n"] == 1)
    good_stamp = (good / "metrics.json").stat().st_mtime_ns
    bad_stamp = (Path(failed["dir"]) / "metrics.json").stat().st_mtime_ns

    second = run_cli("run", "-m", *args)  # the same jobs as `sweep` with the same overrides
    assert second.returncode == 1
    assert f"skipped {good.name}" in second.stdout.replace("\n", "")
    assert (good / "metrics.json").stat().st_mtime_ns == good_stamp  # not rerun
    assert (Path(failed["dir"]) / "metrics.json").stat().st_mtime_ns != bad_stamp  # rerun


def test_sweep_through_submitit_local(tmp_path):
    result = run_cli("sweep", *SWEEP_TINY, "threads=1", "pool=max,avg", "seed=0",
                     "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / ".submitit").is_dir()  # the jobs really went through submitit
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(row["configuration"]["pool"], row["n"]) for row in summary["rows"]] == [("max", 1), ("avg", 1)]
    assert all((tmp_path / name).is_file() for name in OUTPUT_FILES)
