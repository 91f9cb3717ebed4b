"""Sweeps end to end: the default grid, launchers, failures, reruns, compare."""

import json
import os
import re
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


def _hydra_config(sweep_dir: Path, job_dir: str, overrides: list[str]):
    from types import SimpleNamespace

    from hydra.types import RunMode

    return SimpleNamespace(mode=RunMode.MULTIRUN, sweep=SimpleNamespace(dir=sweep_dir.name),
                           runtime=SimpleNamespace(output_dir=str(sweep_dir / job_dir), cwd=str(sweep_dir.parent)),
                           overrides=SimpleNamespace(task=overrides))


def _job(sweep_dir: Path, job_dir: str, overrides: list[str], status: str | None, checkpoint: bool = False) -> Path:
    """A job folder as a run leaves it; status None: killed before it wrote metrics.json."""
    run_dir = sweep_dir / job_dir
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
    if status is not None:
        (run_dir / "metrics.json").write_text(json.dumps({"status": status, "run": {"overrides": overrides}}))
    if checkpoint:
        (run_dir / "model.pt").write_bytes(b"checkpoint")
    return run_dir.resolve()


def test_a_rerun_finds_earlier_jobs_by_their_overrides_not_their_folder(tmp_path):
    # seed=0,1 widened to seed=0,1,2 puts pool=avg seed=0 in another numbered folder
    sweep_dir = tmp_path / "sweep"
    avg0, avg1, max0 = ["pool=avg", "seed=0"], ["pool=avg", "seed=1"], ["pool=max", "seed=0"]
    _job(sweep_dir, "2_pool=avg,seed=0", avg0, "complete")
    stopped = _job(sweep_dir, "3_pool=avg,seed=1", avg1, "interrupted", checkpoint=True)
    _job(sweep_dir, "0_pool=max,seed=0", max0, "failed", checkpoint=True)
    metrics, resume = sweep.earlier_attempt(_hydra_config(sweep_dir, "3_pool=avg,seed=0", avg0))
    assert metrics["status"] == "complete" and resume is None
    # the same overrides in another order (`pool=... seed=...` vs the default grid's `seed=... pool=...`)
    assert sweep.earlier_attempt(_hydra_config(sweep_dir, "4_pool=avg,seed=1", avg1[::-1])) == (None, stopped)
    assert sweep.earlier_attempt(_hydra_config(sweep_dir, "0_pool=max,seed=0", max0)) == (None, None)  # failed: rerun
    assert sweep.earlier_attempt(_hydra_config(sweep_dir, "5_pool=avg,seed=2", ["pool=avg", "seed=2"])) == (None, None)


def test_a_killed_job_continues_from_its_checkpoint_and_one_without_runs_again(tmp_path):
    sweep_dir = tmp_path / "sweep"
    killed = _job(sweep_dir, "0_pool=avg,seed=0", ["pool=avg", "seed=0"], None, checkpoint=True)
    _job(sweep_dir, "1_pool=avg,seed=1", ["pool=avg", "seed=1"], "interrupted")  # stopped before its first checkpoint
    assert sweep.earlier_attempt(_hydra_config(sweep_dir, "0_pool=avg,seed=0", ["pool=avg", "seed=0"])) == (None, killed)
    assert sweep.earlier_attempt(_hydra_config(sweep_dir, "1_pool=avg,seed=1", ["pool=avg", "seed=1"])) == (None, None)
    assert sweep.earlier_attempt(_hydra_config(tmp_path / "new", "0_pool=avg,seed=0", ["pool=avg"])) == (None, None)


def test_the_sweep_directory_is_resolved_once_and_passed_on(tmp_path):
    overrides, sweep_dir = sweep.pin_sweep_dir(["pool=max,avg"])
    assert overrides == ["pool=max,avg", f"hydra.sweep.dir={sweep_dir}"]
    assert re.fullmatch(r"outputs/sweeps/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", str(sweep_dir))  # the config's pattern
    given = tmp_path / "my sweep"
    overrides, sweep_dir = sweep.pin_sweep_dir([f"++hydra.sweep.dir={given}", "seed=0"])
    assert sweep_dir == given and overrides == ["seed=0", f"hydra.sweep.dir='{given}'"]


def test_ctrl_c_summarizes_the_sweep_and_a_rerun_continues_the_stopped_job(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from test_faults import LONG

    args = [*LONG, "pool=max,avg", "seed=0", f"hydra.sweep.dir={tmp_path}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120")
    process = subprocess.Popen([sys.executable, "-m", "poolbench", "sweep", *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("0_*/model.pt")):  # the first job has finished an epoch
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert "continue it with: poolbench run -m" in out and f"hydra.sweep.dir={tmp_path}" in out.replace("\n", "")
    (first,) = _metrics(tmp_path)
    assert first["status"] == "interrupted"
    summary = json.loads((tmp_path / "summary.json").read_text())  # the table of what there was
    assert [run["status"] for run in summary["failed"]] == ["interrupted"]

    again = run_cli("sweep", *args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    by_pool = {m["run"]["pool"]: m for m in _metrics(tmp_path)}
    assert {pool: m["status"] for pool, m in by_pool.items()} == {"max": "complete", "avg": "complete"}
    job_dir = next(tmp_path.glob("0_*"))
    assert by_pool["max"]["run"]["resumed_from"] == str(job_dir)
    # the epoch before the interrupt is carried over (its timing too), not trained again
    assert by_pool["max"]["history"][0] == first["history"][0] and len(by_pool["max"]["history"]) == 6
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["n"] for row in summary["rows"]] == [1, 1] and not summary["failed"]
