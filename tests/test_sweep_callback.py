"""Sweeps in this process: the end-of-multirun table, files and plots, reruns that skip finished
jobs and continue stopped ones, the pinned sweep folder, `poolbench compare`.

The jobs run in this process (the basic launcher), or in joblib's worker processes. A sweep
stopped by a signal is in test_end_to_end.py; submitit's local launcher is a slow test here.
"""

import json
import os
import re
from pathlib import Path

import pytest
from helpers import OUTPUT_FILES, SWEEP_TINY, cli, make_sweep, sweep_metrics, write_run
from omegaconf import OmegaConf

from poolbench import cli as cli_module
from poolbench.config import job_dir_name
from poolbench.sweep.callback import earlier_attempt, pin_sweep_dir
from poolbench.sweep.grid import DEFAULT_GRID, SWEEP_POOLS
from poolbench.sweep.rundir import read_run

POOLS = ["global", "max"]  # given out of the table's order (SWEEP_POOLS: max first)


@pytest.fixture(scope="module")
def pool_grid_sweep(tmp_path_factory):
    """`poolbench sweep pool=global,max seed=0`: two jobs in this process (statistics over seeds:
    test_sweep_aggregate.py). Their dozen overrides, one a path (data_home, unused by data=shapes),
    make long job folder names with "/" in them (test_job_folders_are_flat_and_short)."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    data_home = tmp_path_factory.mktemp("data") / "home"
    result = cli("sweep", *SWEEP_TINY, "threads=1", f"data_home={data_home}", f"pool={','.join(POOLS)}", "seed=0",
                 f"hydra.sweep.dir={sweep_dir}")
    return sweep_dir, result


def test_sweep_hands_hydra_the_default_grid_for_keys_not_given(monkeypatch):
    seen = []
    monkeypatch.setattr(cli_module, "_hydra_main", lambda overrides, multirun: seen.append((overrides, multirun)))
    shapes = cli_module.config.compose_config(["data=shapes"])
    monkeypatch.setattr(cli_module.config, "check_overrides",
                        lambda overrides, multirun=True: shapes)  # test_cli checks grids
    result = cli("sweep", "data=shapes")
    assert result.exit_code == 0, result.output
    assert seen == [([f"pool={DEFAULT_GRID['pool']}", "seed=0,1,2", "data=shapes"], True)]
    assert f"same as: poolbench run -m pool={DEFAULT_GRID['pool']} seed=0,1,2 data=shapes" in result.output


def test_a_sweep_ends_in_table_files_and_plots(pool_grid_sweep):
    sweep_dir, result = pool_grid_sweep
    assert result.exit_code == 0, result.output[-3000:]
    metrics = sweep_metrics(sweep_dir)
    jobs = sorted((m["run"]["pool"], m["run"]["seed"]) for m in metrics)
    assert jobs == [(pool, 0) for pool in sorted(POOLS)]
    assert all(m["status"] == "complete" for m in metrics)
    output = result.output.replace("\n", "")
    for name in OUTPUT_FILES:
        assert (sweep_dir / name).is_file(), name
        if name.endswith(".png"):  # one line per plot names the PNG and its PDF and SVG
            assert f"wrote {sweep_dir / name} (and .pdf, .svg)" in output
        elif not name.endswith((".pdf", ".svg")):
            assert f"wrote {sweep_dir / name}" in output
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert [row["configuration"]["pool"] for row in summary["rows"]] == sorted(POOLS, key=SWEEP_POOLS.index)
    accuracy = {m["run"]["pool"]: m["accuracy"]["test"] for m in metrics}
    for row in summary["rows"]:
        assert row["n"] == 1 and row["seeds"] == [0] and not row["failed"]
        assert row["metrics"]["accuracy"]["mean"] == accuracy[row["configuration"]["pool"]]
    global_row = summary["rows"][1]["metrics"]["accuracy"]  # global is compared with the max baseline
    assert global_row["diff"] == pytest.approx(accuracy["global"] - accuracy["max"])
    for pool in POOLS:
        assert re.search(rf"\n {pool}\s", result.output), pool  # a row of the printed table


def test_a_sweep_times_every_configuration_alone_and_ranks_speed_by_it(pool_grid_sweep):
    sweep_dir, result = pool_grid_sweep
    timing = json.loads((sweep_dir / "timing.json").read_text())
    assert timing["rounds"] == 2 and timing["threads"] == 1  # SWEEP_TINY: eval.throughput.rounds=2
    assert sorted(entry["config"]["pool"] for entry in timing["configurations"]) == sorted(POOLS)
    assert all(len(entry["infer_images_per_s"]) == 2 and min(entry["train_images_per_s"]) > 0
               for entry in timing["configurations"])
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["speed_source"] == "quiet timing pass"
    for row in summary["rows"]:
        entry = next(e for e in timing["configurations"] if e["config"] == row["configuration"])
        speed = row["metrics"]["infer_images_per_s"]
        assert speed["values"] == entry["infer_images_per_s"] and speed["source"] == "quiet timing pass"
        assert row["metrics"]["accuracy"]["n"] == 1  # seeds still count runs, not timing rounds
    assert "quiet timing pass: 2 configurations x 2 rounds" in result.output.replace("\n", "")


def test_compare_mixes_run_and_sweep_directories(pool_grid_sweep, tmp_path):
    sweep_dir, _ = pool_grid_sweep
    # A single run of the same configuration with another seed, as `poolbench run ... seed=7` leaves it
    # (built from a sweep job's file to save a training run).
    job = next(m for m in sweep_metrics(sweep_dir) if m["run"]["pool"] == "max")
    job["run"]["seed"] = 7
    job["run"]["overrides"] = [o for o in job["run"]["overrides"] if not o.startswith("seed=")] + ["seed=7"]
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "metrics.json").write_text(json.dumps(job))
    result = cli("compare", str(sweep_dir), str(tmp_path / "one"), "-o", str(tmp_path / "cmp"), "--time")
    assert result.exit_code == 0, result.output[-3000:]
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    # --time: a fresh timing pass over both folders' configurations, saved beside the summary
    assert (tmp_path / "cmp" / "timing.json").is_file() and summary["speed_source"] == "quiet timing pass"
    max_row = next(row for row in summary["rows"] if row["configuration"]["pool"] == "max")
    assert max_row["n"] == 2 and max_row["seeds"] == [0, 7]  # the single run joins its configuration
    assert len(summary["rows"]) == 2 and not summary["failed"]
    assert all((tmp_path / "cmp" / name).is_file() for name in OUTPUT_FILES)


def test_compare_writes_beside_one_directory_or_into_a_new_folder_for_several(tmp_path, monkeypatch, no_plots):
    make_sweep(tmp_path / "a")
    make_sweep(tmp_path / "b")
    one = cli("compare", str(tmp_path / "a"))
    assert one.exit_code == 0, one.output
    assert "Training diverged in epoch 1" in one.output  # global seed=2 failed: the table lists it
    assert all((tmp_path / "a" / name).is_file() for name in ("summary.csv", "summary.md", "summary.json", "runs.csv"))
    monkeypatch.chdir(tmp_path)
    several = cli("compare", "a", "b")
    (out,) = (tmp_path / "outputs" / "compare").glob("*/*")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", out.relative_to(tmp_path / "outputs" / "compare").as_posix())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"] == ["a", "b"] and several.exit_code == 0


def test_compare_from_python_returns_the_table_data_and_can_keep_quiet(tmp_path, capsys, no_plots):
    from poolbench.sweep.aggregate import to_dict
    from poolbench.sweep.compare import compare

    make_sweep(tmp_path / "a")
    summary = compare([tmp_path / "a"], quiet=True)
    assert capsys.readouterr().out == ""
    assert [(row.config["pool"], row.n) for row in summary.rows] == [("max", 3), ("avg", 3), ("global", 2)]
    assert to_dict(summary)["rows"][1]["metrics"]["accuracy"]["significant"]  # summary.json's plain data
    assert all((tmp_path / "a" / name).is_file() for name in ("summary.json", "runs.csv"))
    unwritten = compare([tmp_path / "a"], tmp_path / "elsewhere", quiet=True, write=False)
    assert not (tmp_path / "elsewhere").exists() and capsys.readouterr().out == ""
    assert [row.label for row in unwritten.rows] == [row.label for row in summary.rows]


def test_compare_of_a_folder_without_runs_exits_2(tmp_path):
    result = cli("compare", str(tmp_path))
    assert result.exit_code == 2 and "holds no poolbench runs" in result.output


def one_good_one_diverged(sweep_dir):
    """The summary of a two-job sweep where one job diverged: (failed entry, good job dir, mtimes)."""
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert [row["n"] for row in summary["rows"]] == [1, 0]
    (failed,) = summary["failed"]
    assert failed["status"] == "failed" and failed["error"].startswith("Training diverged")
    assert "\n" not in failed["error"]
    good = next(Path(row["runs"][0]["dir"]) for row in summary["rows"] if row["n"] == 1)
    return (failed, good, (good / "metrics.json").stat().st_mtime_ns,
            (Path(failed["dir"]) / "metrics.json").stat().st_mtime_ns)


def test_failed_job_is_listed_and_a_rerun_only_retries_it(tmp_path, no_plots):
    args = [*SWEEP_TINY, "threads=1", "pool=avg", "seed=0", "train.lr=0.05,1e30", f"hydra.sweep.dir={tmp_path}"]
    first = cli("sweep", *args)
    assert first.exit_code == 1, first.output[-3000:]
    assert "error: Training diverged" in first.output.replace("\n", " ")
    failed, good, good_stamp, bad_stamp = one_good_one_diverged(tmp_path)

    second = cli("run", "-m", *args)  # the same jobs as `sweep` with the same overrides; no default grid added
    assert second.exit_code == 1 and "same as:" not in second.output
    assert len(list(tmp_path.glob("*/metrics.json"))) == 2
    assert f"skipped {good.name}" in second.output.replace("\n", "")
    assert (good / "metrics.json").stat().st_mtime_ns == good_stamp  # not rerun
    assert (Path(failed["dir"]) / "metrics.json").stat().st_mtime_ns != bad_stamp  # rerun


def test_a_failure_only_the_table_knows_of_fails_the_sweep(tmp_path, no_plots):
    """Jobs run by other processes (joblib, submitit) fail there, unseen here: the exit code comes from the
    sweep's table. A failed job an earlier grid left in the folder stands in for one."""
    same = tuple(o for o in SWEEP_TINY if o != "data=shapes") + ("threads=1",)
    write_run(tmp_path / "old", "avg", 0, 0, status="failed", error="RunError: boom", extra=same)
    result = cli("run", "-m", *SWEEP_TINY, "threads=1", "pool=max", "seed=0", f"hydra.sweep.dir={tmp_path}")
    assert result.exit_code == 1, result.output[-3000:]
    output = result.output.replace("\n", " ")
    assert "error: 1 of 2 jobs did not complete; the table above lists them with their errors." in output
    assert "RunError: boom" in output and read_run(tmp_path / "old").status == "failed"


@pytest.mark.slow  # ~15 s, mostly two workers importing torch. Without workers: failures and reruns above,
#                    the exit code from the table above, the threads each worker takes in test_runtime
def test_jobs_in_worker_processes_a_failed_one_listed_and_a_rerun_only_retries_it(tmp_path):
    """joblib's two workers run the jobs: the table reads their files, the failure comes from the table."""
    from joblib.externals.loky import get_reusable_executor

    args = [*SWEEP_TINY, "pool=avg", "seed=0", "train.lr=0.05,1e30", "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}"]
    try:
        first = cli("sweep", *args)
        assert first.exit_code == 1, first.output[-3000:]
        assert "error: 1 of 2 jobs did not complete; the table above lists them" in first.output.replace("\n", " ")
        metrics = sweep_metrics(tmp_path)
        # Two parallel jobs split the cores (threads=auto) instead of each taking all of them.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        assert {m["run"]["threads"] for m in metrics} == {max(1, cores // min(2, cores))}
        failed, good, good_stamp, bad_stamp = one_good_one_diverged(tmp_path)

        second = cli("run", "-m", *args)  # the same jobs as `sweep` with the same overrides; no default grid added
    finally:
        get_reusable_executor().shutdown(wait=True)  # no idle workers left behind
    assert second.exit_code == 1 and "same as:" not in second.output
    assert len(list(tmp_path.glob("*/metrics.json"))) == 2
    assert (good / "metrics.json").stat().st_mtime_ns == good_stamp  # skipped: not rerun
    assert (Path(failed["dir"]) / "metrics.json").stat().st_mtime_ns != bad_stamp  # rerun
    assert all((tmp_path / name).is_file() for name in OUTPUT_FILES)


@pytest.mark.slow  # ~20 s: a fresh interpreter per job; the same path as the joblib sweep above
def test_sweep_through_submitit_local(tmp_path):
    result = cli("sweep", *SWEEP_TINY, "threads=1", "pool=max,avg", "seed=0",
                 "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={tmp_path}")
    assert result.exit_code == 0, result.output[-3000:]
    assert (tmp_path / ".submitit").is_dir()  # the jobs really went through submitit
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(row["configuration"]["pool"], row["n"]) for row in summary["rows"]] == [("max", 1), ("avg", 1)]
    assert all((tmp_path / name).is_file() for name in OUTPUT_FILES)


def test_job_folder_names_are_flat_short_and_unique():
    assert job_dir_name("pool=max,seed=0") == "pool=max,seed=0"  # the usual names read as before
    long = ",".join(f"train.key{i}=/data/set/{i}" for i in range(12))
    name = job_dir_name(long)
    assert len(name) == 100 and re.fullmatch(r"[A-Za-z0-9._=,-]+", name)
    assert job_dir_name(long + "0") != name  # a cut name ends in a hash of all the overrides
    assert job_dir_name("a=x/y").startswith("a=x_y-")  # so does a sanitized one: "a=x_y" stays another job's


def test_job_folders_are_flat_and_short(pool_grid_sweep):
    # A dozen overrides and a "/" in a value: once a "File name too long" crash and nested folders.
    sweep_dir, result = pool_grid_sweep
    assert result.exit_code == 0, result.output[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [p.name[:2] for p in jobs] == ["0_", "1_"] and all(len(p.name) <= 2 + 100 for p in jobs)
    for job in jobs:
        assert (job / "metrics.json").is_file()
        overrides = list(OmegaConf.load(job / ".hydra" / "overrides.yaml"))  # what reruns match jobs by
        assert any(o.startswith("data_home=/") for o in overrides) and len(overrides) == len(SWEEP_TINY) + 4


# ---------------------------------------------------------------- reruns: skip, continue, run again

def _hydra_config(sweep_dir: Path, job_dir: str, overrides: list[str]):
    from types import SimpleNamespace

    from hydra.types import RunMode

    return SimpleNamespace(mode=RunMode.MULTIRUN, sweep=SimpleNamespace(dir=sweep_dir.name),
                           runtime=SimpleNamespace(output_dir=str(sweep_dir / job_dir), cwd=str(sweep_dir.parent)),
                           overrides=SimpleNamespace(task=overrides))


def _job(sweep_dir: Path, job_dir: str, overrides: list[str], status: str | None, checkpoint: bool = False,
         config: bool = True) -> Path:
    """A job folder as a run leaves it; status None: killed before it wrote metrics.json."""
    values = dict(o.split("=", 1) for o in overrides)
    run_dir = sweep_dir / job_dir
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
    if config:
        OmegaConf.save(OmegaConf.create({"pool": {"name": values["pool"]}, "data": {"name": "shapes"},
                                         "seed": int(values["seed"])}), run_dir / ".hydra" / "config.yaml")
    if status is not None:
        run = {"pool": values["pool"], "dataset": "shapes", "seed": int(values["seed"]), "device": "cpu",
               "overrides": overrides}
        (run_dir / "metrics.json").write_text(json.dumps({"status": status, "run": run}))
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
    metrics, resume = earlier_attempt(_hydra_config(sweep_dir, "3_pool=avg,seed=0", avg0))
    assert metrics["status"] == "complete" and resume is None
    # the same overrides in another order (`pool=... seed=...` vs the default grid's `seed=... pool=...`)
    assert earlier_attempt(_hydra_config(sweep_dir, "4_pool=avg,seed=1", avg1[::-1])) == (None, stopped)
    assert earlier_attempt(_hydra_config(sweep_dir, "0_pool=max,seed=0", max0)) == (None, None)  # failed: rerun
    assert earlier_attempt(_hydra_config(sweep_dir, "5_pool=avg,seed=2", ["pool=avg", "seed=2"])) == (None, None)


@pytest.mark.parametrize("config", [True, False])  # False: .hydra/config.yaml unreadable, overrides.yaml fine
def test_a_killed_job_continues_from_its_checkpoint_and_one_without_runs_again(tmp_path, config):
    sweep_dir = tmp_path / "sweep"
    killed = _job(sweep_dir, "0_pool=avg,seed=0", ["pool=avg", "seed=0"], None, checkpoint=True, config=config)
    _job(sweep_dir, "1_pool=avg,seed=1", ["pool=avg", "seed=1"], "interrupted")  # stopped before its first checkpoint
    assert earlier_attempt(_hydra_config(sweep_dir, "0_pool=avg,seed=0", ["pool=avg", "seed=0"])) == (None, killed)
    assert earlier_attempt(_hydra_config(sweep_dir, "1_pool=avg,seed=1", ["pool=avg", "seed=1"])) == (None, None)
    assert earlier_attempt(_hydra_config(tmp_path / "new", "0_pool=avg,seed=0", ["pool=avg"])) == (None, None)


def test_a_single_run_never_looks_for_earlier_attempts(tmp_path):
    from hydra.types import RunMode

    sweep_dir = tmp_path / "sweep"
    _job(sweep_dir, "0_pool=avg,seed=0", ["pool=avg", "seed=0"], "complete")
    single = _hydra_config(sweep_dir, "0_pool=avg,seed=0", ["pool=avg", "seed=0"])
    single.mode = RunMode.RUN
    assert earlier_attempt(single) == (None, None)


def test_the_sweep_directory_is_resolved_once_and_passed_on(tmp_path):
    overrides, sweep_dir = pin_sweep_dir(["pool=max,avg"])
    assert overrides == ["pool=max,avg", f"hydra.sweep.dir={sweep_dir}"]
    assert re.fullmatch(r"outputs/sweeps/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", str(sweep_dir))  # the config's pattern
    given = tmp_path / "my sweep"
    overrides, sweep_dir = pin_sweep_dir([f"++hydra.sweep.dir={given}", "seed=0"])
    assert sweep_dir == given and overrides == ["seed=0", f"hydra.sweep.dir='{given}'"]
