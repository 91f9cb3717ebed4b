"""Faults and bad input through the real command line: what the user sees, what is left on disk."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, run_cli
from poolbench.config import check_overrides, compose_config
from poolbench.errors import UsageError

# Many short epochs: a signal sent once the first checkpoint exists lands mid-training.
LONG = ["data=shapes", "data.train_size=640", "data.test_size=100", "train.epochs=6", "train.batch_size=64",
        "eval.shift_pairs=1", "eval.throughput.warmup=1", "eval.throughput.iters=2",
        "eval.throughput.batch_size=32", "threads=1"]


def start_run(run_dir, *overrides):
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120")
    return subprocess.Popen([sys.executable, "-m", "poolbench", "run", *overrides, f"hydra.run.dir={run_dir}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt_after_first_epoch(run_dir, sig, *overrides):
    process = start_run(run_dir, *overrides)
    deadline = time.monotonic() + 120
    while not (run_dir / "model.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_sigint_checkpoints_and_resume_reaches_the_uninterrupted_accuracy(tmp_path):
    code, out, err = interrupt_after_first_epoch(tmp_path / "cut", signal.SIGINT, *LONG)
    assert code == 130, out + err
    assert "Traceback" not in out + err and f"train.resume={tmp_path / 'cut'}" in out
    cut = metrics(tmp_path / "cut")
    assert cut["status"] == "interrupted" and cut["accuracy"] == {} and 1 <= len(cut["history"]) < 6
    ckpt = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert ckpt["epoch"] < 6

    resumed = run_cli("run", *LONG, f"train.resume={tmp_path / 'cut'}", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    done = metrics(tmp_path / "resumed")
    assert done["status"] == "complete" and done["run"]["resumed_from"] == str(tmp_path / "cut")
    reference = uninterrupted_history(LONG, tmp_path / "straight.pt")
    assert [h["train_loss"] for h in done["history"]] == [h["train_loss"] for h in reference]
    assert [h["test_accuracy"] for h in done["history"]] == [h["test_accuracy"] for h in reference]
    assert done["accuracy"]["test"] == reference[-1]["test_accuracy"]


def uninterrupted_history(overrides, checkpoint):
    """The same run trained straight through in this process (one thread, like the CLI's threads=1)."""
    from poolbench.data import load_dataset
    from poolbench.model import build_model
    from poolbench.train import train

    cfg = compose_config(overrides)
    data = load_dataset(cfg.data)
    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg).to(memory_format=torch.channels_last)  # as experiment.py builds it
    return train(cfg, model, data, torch.device("cpu"), checkpoint).history


@pytest.mark.slow  # the same handler as SIGINT; test_train covers SIGTERM in-process
def test_sigterm_also_stops_cleanly(tmp_path):
    code, out, err = interrupt_after_first_epoch(tmp_path / "run", signal.SIGTERM, *LONG)
    assert code == 130 and "Traceback" not in out + err
    assert metrics(tmp_path / "run")["status"] == "interrupted"
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no half-written file left behind


def test_diverging_run_fails_with_a_clear_error(tmp_path):
    result = run_cli("run", *TINY, "train.lr=1e12", "train.warmup_fraction=0", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "Training diverged" in result.stdout and "lower train.lr" in result.stdout
    saved = metrics(tmp_path)
    assert saved["status"] == "failed" and "diverged" in saved["error"] and saved["accuracy"] == {}


@pytest.mark.parametrize("overrides, message", [
    (["pool=fractional", "pool.ratio=1.5"], r"pool\.ratio .*got 1\.5"),
    (["model.channels=[4,4,4,4,4,4]"], "too deep"),
])
def test_operator_options_and_model_depth_are_checked_before_a_run(overrides, message):
    with pytest.raises(UsageError, match=message):
        check_overrides(["data=shapes", *overrides])


def test_bad_value_leaves_no_run_directory(tmp_path):
    result = run_cli("run", *TINY, "pool=fractional", "pool.ratio=0", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.returncode == 2 and "pool.ratio" in result.stdout and "got 0" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr and not (tmp_path / "x").exists()


def test_missing_data_without_network_is_a_usage_error_and_no_finished_result(tmp_path):
    env_proxy = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}  # no network
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200", **env_proxy)
    result = subprocess.run([sys.executable, "-m", "poolbench", "run", "data=cifar10", "threads=1",
                             f"data.root={tmp_path / 'empty'}", f"hydra.run.dir={tmp_path / 'run'}"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert "CIFAR-10 not found" in result.stdout and "data.source=PATH" in result.stdout
    assert metrics(tmp_path / "run")["status"] == "failed"


def test_corrupted_dataset_archive_is_named(tmp_path):
    from poolbench.data import load_dataset

    archive = tmp_path / "set.tar.xz"
    archive.write_bytes(b"\xfd7zXZ\x00" + b"\x00" * 100)
    cfg = compose_config(["data=imagefolder", f"data.root={archive}", f"data.cache={tmp_path / 'c'}"])
    with pytest.raises(UsageError, match=f"Archive {archive} is damaged or truncated"):
        load_dataset(cfg.data)


def fake_run_dir(path, checkpoint: bytes | None):
    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_config(TINY), path / ".hydra" / "config.yaml")
    if checkpoint is not None:
        (path / "model.pt").write_bytes(checkpoint)
    return path


def test_eval_of_a_damaged_checkpoint_is_one_sentence(tmp_path):
    run_dir = fake_run_dir(tmp_path / "run", b"not a checkpoint")
    result = run_cli("eval", str(run_dir))
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert f"Checkpoint {run_dir / 'model.pt'} is damaged" in result.stdout


def _truncated_checkpoint(tmp_path):
    from poolbench.model import build_model

    torch.save({"model": build_model(compose_config(TINY)).state_dict()}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    return data[: len(data) // 2]


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind, message", [
    ("truncated", "is damaged"), ("missing", "has no checkpoint model.pt"), ("pickled code", "is damaged")])
def test_eval_refuses_truncated_missing_or_unsafe_checkpoints(tmp_path, capsys, kind, message):
    import pickle

    from poolbench.experiment import evaluate_run

    content = {"truncated": _truncated_checkpoint(tmp_path), "missing": None,
               "pickled code": pickle.dumps(Payload())}[kind]
    run_dir = fake_run_dir(tmp_path / "run", content)
    with pytest.raises(UsageError, match=message):
        evaluate_run(run_dir)
    assert "this must never run" not in capsys.readouterr().out  # weights_only=True ran nothing


def test_data_command_errors(tmp_path):
    missing = run_cli("data", "verify", "cifar10", f"data.root={tmp_path}")
    assert missing.returncode == 1 and "missing" in missing.stdout and "poolbench data download cifar10" in missing.stdout
    assert "Traceback" not in missing.stdout + missing.stderr


def test_a_write_that_dies_halfway_leaves_the_previous_file_whole(tmp_path):
    from poolbench.results import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "model.pt", {"epoch": 1, "w": torch.ones(1000)})
    with pytest.raises(Exception):  # torch.save has written the tensor when it meets the lambda
        save_checkpoint(tmp_path / "model.pt", {"epoch": 2, "w": torch.zeros(100000), "bad": lambda: 0})
    assert load_checkpoint(tmp_path / "model.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
