"""Reading one run directory: what ran, how it ended (the status words), its metrics."""

import json

import pytest
from helpers import make_sweep, write_run

from poolbench.errors import UsageError
from poolbench.sweep.aggregate import summarize
from poolbench.sweep.rundir import find_run_dirs, read_run


def hydra_files(run_dir, overrides):
    """What Hydra writes into a job folder before the job starts."""
    (run_dir / ".hydra").mkdir(parents=True)
    values = dict(o.split("=", 1) for o in overrides)
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"pool: {{name: {values.get('pool', 'max')}}}\ndata: {{name: shapes}}\nseed: {values.get('seed', 0)}\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return run_dir


def test_finding_runs_skips_hidden_folders_and_rejects_empty_ones(tmp_path):
    make_sweep(tmp_path / "sweep")
    write_run(tmp_path / "sweep" / ".submitit" / "x", "max", 9, 0.1)
    assert len(find_run_dirs([tmp_path])) == 9
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no poolbench runs"):
        find_run_dirs([tmp_path / "empty"])
    with pytest.raises(UsageError, match="is not a directory"):
        find_run_dirs([tmp_path / "nope"])


def test_a_complete_run_gives_its_configuration_seed_and_metrics(tmp_path):
    record = read_run(write_run(tmp_path / "r", "avg", 2, 0.7, extra=("train.lr=0.2",)))
    assert record.status == "complete" and record.complete and record.error is None
    assert record.config == {"pool": "avg", "data": "shapes", "device": "cpu", "train.lr": "0.2"}
    assert record.seed == 2 and record.metrics["accuracy"]["test"] == 0.7


def test_a_failed_run_keeps_the_first_line_of_its_error(tmp_path):
    record = read_run(write_run(tmp_path / "r", "max", 0, 0, status="failed", error="RunError: boom\ndetail"))
    assert record.status == "failed" and record.error == "RunError: boom" and not record.complete


def test_a_job_folder_without_metrics_is_killed_and_resumable_with_a_checkpoint(tmp_path):
    run_dir = hydra_files(tmp_path / "r", ["pool=avg", "seed=3", "train.lr=0.2"])
    record = read_run(run_dir)
    assert record.status == "killed" and "no metrics.json" in record.error
    assert record.config == {"pool": "avg", "data": "shapes", "train.lr": "0.2"} and record.seed == 3
    assert not record.resumable  # no checkpoint: the job runs again from the start
    (run_dir / "model.pt").write_bytes(b"checkpoint")
    assert read_run(run_dir).resumable


@pytest.mark.parametrize("content", ["{not json", json.dumps({"status": "complete"}), json.dumps([1, 2])])
def test_an_unreadable_metrics_file_is_damaged(tmp_path, content):
    run_dir = hydra_files(tmp_path / "r", ["pool=max", "seed=1"])
    (run_dir / "metrics.json").write_text(content)
    record = read_run(run_dir)
    assert record.status == "damaged" and "damaged" in record.error and not record.complete
    assert record.config["pool"] == "max" and record.seed == 1  # what .hydra/ says it was
    assert [run.status for run in summarize([tmp_path]).failed] == ["damaged"]


def test_a_damaged_run_without_hydra_files_is_listed_by_its_folder(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text("{not json")
    record = read_run(tmp_path / "r")
    assert record.status == "damaged" and record.config == {"dir": "r"} and record.seed is None


def test_interrupted_job_says_how_to_continue(tmp_path):
    path = write_run(tmp_path / "r", "max", 0, 0, status="interrupted")
    metrics = json.loads((path / "metrics.json").read_text())
    metrics["resume_with"] = f"train.resume={path}"
    (path / "metrics.json").write_text(json.dumps(metrics))
    record = read_run(path)
    assert record.status == "interrupted"
    assert record.error == f"stopped before it finished; continue with train.resume={path}"
    assert [run.status for run in summarize([tmp_path]).failed] == ["interrupted"]
