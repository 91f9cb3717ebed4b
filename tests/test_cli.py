"""End to end through the real command line, on the generated `shapes` data."""

import json

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from conftest import TINY

    run_dir = tmp_path_factory.mktemp("run")
    result = run_cli("run", *TINY, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir, result


def test_run_writes_a_complete_run_directory(finished_run):
    run_dir, result = finished_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "model.pt").is_file() and (run_dir / "poolbench.log").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["schema"] == 1 and metrics["status"] == "complete"
    assert metrics["run"]["pool"] == "max" and metrics["run"]["dataset"] == "shapes"
    assert 0.3 < metrics["accuracy"]["test"] <= 1.0  # 10 classes: chance is 0.1
    inv = metrics["invariance"]
    assert 0 <= inv["consistency"] <= 1 and 0 <= inv["flip_rate_1px"] <= 1
    assert set(inv["shift_accuracy"]) == {"0", "1", "2", "3"}
    assert inv["shift_accuracy"]["0"] == metrics["accuracy"]["test"]
    speed = metrics["throughput"]
    assert speed["infer_images_per_s"] > 0 and speed["train_images_per_s"] > 0
    assert 0 < speed["infer_mfu"] < 2 and 0 < speed["train_mfu"] < 2
    assert metrics["model"]["params"] > 0 and metrics["model"]["flops_per_image"] > 0
    assert 0 < metrics["time"]["train_s"] <= metrics["time"]["total_s"]
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["history"][-1]["seconds"] == pytest.approx(metrics["time"]["train_s"], abs=1e-3)
    # the run directory's path is the last thing printed
    assert result.stdout.strip().splitlines()[-1].endswith(str(run_dir))


def test_eval_reproduces_the_recorded_accuracy(finished_run):
    run_dir, _ = finished_run
    recorded = json.loads((run_dir / "metrics.json").read_text())
    result = run_cli("eval", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{100 * recorded['accuracy']['test']:.2f}%" in result.stdout
    assert f"{100 * recorded['invariance']['consistency']:.2f}%" in result.stdout


def test_unknown_pool_exits_2_listing_valid_names(tmp_path):
    result = run_cli("run", "pool=nope", "data=shapes", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.returncode == 2
    from poolbench.pools import pool_names

    assert "choose one of: " + ", ".join(pool_names()) in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "x").exists()


def test_eval_of_a_folder_that_is_not_a_run_exits_2(tmp_path):
    result = run_cli("eval", str(tmp_path))
    assert result.returncode == 2 and "not a poolbench run directory" in result.stdout


def test_multirun_runs_every_job(tmp_path):
    from conftest import TINY

    result = run_cli("run", "-m", *TINY, "pool=avg,strided", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = sorted(json.loads(p.read_text())["run"]["pool"] for p in tmp_path.glob("*/metrics.json"))
    assert statuses == ["avg", "strided"]
