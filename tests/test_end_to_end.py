"""The few checks that need real processes: a plain run as a user starts it; Ctrl-C (SIGINT) during a
sweep, continued by a rerun, and SIGTERM during a run are slow tests. Everything else about the
command line runs in-process (test_cli.py, test_sweep_callback.py, test_experiment.py)."""

import json
import shlex
import signal
import time

import pytest
import torch
from helpers import LONG, LONG_EPOCHS, TINY, cli, read_metrics, run_cli, start_cli, sweep_metrics

from poolbench.config import compose_config

# ---------------------------------------------------------------- a plain run

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = run_cli("run", *TINY, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir, result


def test_run_writes_a_complete_run_directory(finished_run):
    run_dir, result = finished_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "model.pt").is_file() and (run_dir / "poolbench.log").is_file()
    metrics = read_metrics(run_dir)
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
    assert "status: complete" in (run_dir / "poolbench.log").read_text()  # the log file gets the logging
    # the run directory's path is the last thing printed
    assert result.stdout.strip().splitlines()[-1].endswith(str(run_dir))
    assert "Traceback" not in result.stderr


def test_eval_reproduces_the_recorded_accuracy(finished_run):
    run_dir, _ = finished_run
    recorded = read_metrics(run_dir)
    result = cli("eval", str(run_dir))
    assert result.exit_code == 0, result.output
    assert f"{100 * recorded['accuracy']['test']:.2f}%" in result.output
    assert f"{100 * recorded['invariance']['consistency']:.2f}%" in result.output


# ---------------------------------------------------------------- signals during training

def interrupt_after_first_epoch(run_dir, sig, *overrides):
    process = start_cli("run", *overrides, f"hydra.run.dir={run_dir}")
    deadline = time.monotonic() + 120
    while not (run_dir / "model.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def uninterrupted_history(overrides, checkpoint):
    """The same run trained straight through in this process (one thread, like the CLI's threads=1)."""
    from poolbench.data import load_dataset
    from poolbench.runtime import model_on
    from poolbench.train import train

    cfg = compose_config(overrides)
    data = load_dataset(cfg.data)
    torch.manual_seed(int(cfg.seed))
    return train(cfg, model_on(cfg, torch.device("cpu")), data, torch.device("cpu"), checkpoint).history


@pytest.mark.slow  # SIGINT's handler, whose SIGTERM half test_runtime checks in-process; SIGINT end to end below
def test_sigterm_also_stops_cleanly(tmp_path):
    code, out, err = interrupt_after_first_epoch(tmp_path / "run", signal.SIGTERM, *LONG)
    assert code == 130 and "Traceback" not in out + err
    assert read_metrics(tmp_path / "run")["status"] == "interrupted"
    again = shlex.join([*LONG, f"train.resume={tmp_path / 'run'}"])  # quoted for a shell
    assert f"continue with: poolbench run {again}" in out.replace("\n", "")
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no half-written file left behind


@pytest.mark.slow  # 10-12 s; in the default run: resume bit for bit (test_train), a sweep's rerun (test_sweep_callback)
def test_ctrl_c_stops_a_sweep_cleanly_and_a_rerun_continues_it_as_if_never_stopped(tmp_path, no_plots):
    """Ctrl-C (SIGINT) during a sweep's job: it checkpoints and stops, the sweep says what it has and how to
    go on; the rerun continues the job from its checkpoint, bit for bit. (One job keeps it short: which
    jobs a rerun skips, continues or runs again is test_sweep_callback's.)"""
    args = [*LONG, "pool=max", "seed=0", f"hydra.sweep.dir={tmp_path}"]
    process = start_cli("sweep", *args)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("0_*/model.pt")):  # the first job has finished an epoch
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "Traceback" not in out + err and not list(tmp_path.glob("0_*/.*.tmp"))  # no half-written file
    job_dir = next(tmp_path.glob("0_*"))
    printed = out.replace("\n", "")
    assert "checkpoint saved; continue with: poolbench run " in printed and f"train.resume={job_dir}" in printed
    assert "continue it with: poolbench run -m" in printed and f"hydra.sweep.dir={tmp_path}" in printed
    (first,) = sweep_metrics(tmp_path)
    assert first["status"] == "interrupted" and first["accuracy"] == {}
    assert 1 <= len(first["history"]) < LONG_EPOCHS
    assert torch.load(job_dir / "model.pt", weights_only=True)["epoch"] < LONG_EPOCHS
    summary = json.loads((tmp_path / "summary.json").read_text())  # the table of what there was
    assert [run["status"] for run in summary["failed"]] == ["interrupted"]

    again = cli("sweep", *args)  # in this process: the rerun's logic is what is tested here
    assert again.exit_code == 0, again.output[-3000:]
    (done,) = sweep_metrics(tmp_path)
    assert done["status"] == "complete" and done["run"]["resumed_from"] == str(job_dir)
    # the epochs before the interrupt are carried over (their timing too), not trained again ...
    assert done["history"][: len(first["history"])] == first["history"]
    # ... and the rest trains exactly as an uninterrupted run would
    reference = uninterrupted_history([*LONG, "pool=max", "seed=0"], tmp_path / "straight.pt")
    assert [h["train_loss"] for h in done["history"]] == [h["train_loss"] for h in reference]
    assert [h["test_accuracy"] for h in done["history"]] == [h["test_accuracy"] for h in reference]
    assert done["accuracy"]["test"] == reference[-1]["test_accuracy"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["n"] for row in summary["rows"]] == [1] and not summary["failed"]
