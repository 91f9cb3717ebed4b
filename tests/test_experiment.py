"""One experiment in this process: what run_experiment leaves on disk when training stops or fails,
and what `evaluate_run` refuses. (The same through real processes and signals: test_end_to_end.py.)"""

import pickle
import sys

import pytest
import torch
from helpers import SWEEP_TINY, TINY, cli, fake_run_dir, read_metrics

from poolbench.config import check_overrides, compose_config
from poolbench.errors import RunError, UsageError
from poolbench.experiment import evaluate_run, run_experiment
from poolbench.train import TrainingInterrupted, TrainState

QUICK = [*SWEEP_TINY, "threads=1"]


@pytest.mark.parametrize("overrides, message", [
    (["pool=fractional", "pool.ratio=1.5"], r"pool\.ratio .*got 1\.5"),
    (["model.channels=[4,4,4,4,4,4]"], "too deep"),
])
def test_operator_options_and_model_depth_are_checked_before_a_run(overrides, message):
    with pytest.raises(UsageError, match=message):
        check_overrides(["data=shapes", *overrides])


def test_corrupted_dataset_archive_is_named(tmp_path):
    from poolbench.data import load_dataset

    archive = tmp_path / "set.tar.xz"
    archive.write_bytes(b"\xfd7zXZ\x00" + b"\x00" * 100)
    cfg = compose_config(["data=imagefolder", f"data.root={archive}", f"data.cache={tmp_path / 'c'}"])
    with pytest.raises(UsageError, match=f"Archive {archive} is damaged or truncated"):
        load_dataset(cfg.data)


def test_a_complete_run_records_what_ran_and_how_long(tmp_path, capsys):
    metrics = run_experiment(compose_config(QUICK), tmp_path, ["pool=max"], show_progress=False)
    assert read_metrics(tmp_path) == metrics  # what it returns is what it wrote
    assert metrics["status"] == "complete" and metrics["run"]["overrides"] == ["pool=max"]
    assert metrics["run"]["threads"] == 1 and metrics["throughput"]["matmul_dtype"] == "float32"
    assert metrics["throughput"]["matmul_method"].startswith("best of ")  # the MFU denominator and how measured
    env = metrics["environment"]  # where the result came from (test_environment: every key)
    assert env["threads"] == 1 and env["gpu"] is None and env["torch"] == torch.__version__ and env["started"]
    rate = f"{metrics['throughput']['matmul_flops_per_s'] / 1e9:.3g} GFLOP/s measured float32 matmul"
    assert f"of {rate}" in capsys.readouterr().out  # the results table shows each MFU's denominator
    assert 0 < metrics["time"]["train_s"] and metrics["time"]["eval_s"] < metrics["time"]["total_s"]
    assert (tmp_path / "model.pt").is_file()
    # the recipe and test protocol, which a table names (results.recipe_text)
    cfg = compose_config(QUICK)
    assert metrics["protocol"]["train"]["epochs"] == cfg.train.epochs
    assert metrics["protocol"]["train"]["precision"] == "float32"  # what train.amp=auto resolved to here
    assert metrics["protocol"]["eval"]["draws"] == cfg.eval.draws
    assert metrics["invariance"]["draws"] == 1  # pool=max has nothing to draw


def test_training_stopped_between_steps_records_how_to_continue(tmp_path, monkeypatch, capsys):
    import poolbench.experiment as experiment

    state = TrainState(epoch=1, train_seconds=0.5, history=[{"epoch": 1, "train_loss": 2.0}])

    def stopped(*args, **kwargs):
        raise TrainingInterrupted(state)

    monkeypatch.setattr(experiment, "train", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(compose_config(QUICK), tmp_path, ["pool=max", f"train.resume={tmp_path / 'old'}"],
                       show_progress=False)
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "interrupted" and metrics["history"] == state.history
    assert metrics["resume_with"] == f"train.resume={tmp_path}" and metrics["time"]["train_s"] == 0.5
    out = capsys.readouterr().out.replace("\n", "")
    assert f"continue with: poolbench run pool=max train.resume={tmp_path}" in out  # the old resume replaced


def test_an_interrupt_before_training_leaves_an_interrupted_run_without_a_resume_hint(tmp_path, monkeypatch,
                                                                                    capsys):
    import poolbench.experiment as experiment

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "load_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(compose_config(QUICK), tmp_path, ["pool=max", "data.root=/my data"], show_progress=False)
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "interrupted" and "resume_with" not in metrics and metrics["history"] == []
    out = capsys.readouterr().out.replace("\n", "")
    assert "interrupted before training started: nothing to keep; run it again with: " \
           "poolbench run pool=max 'data.root=/my data'" in out  # quoted for a shell


def test_an_interrupt_during_evaluation_says_training_is_kept_and_the_resume_finishes_it(tmp_path, monkeypatch,
                                                                                      capsys):
    from omegaconf import OmegaConf

    import poolbench.experiment as experiment

    run_dir = tmp_path / "my run"
    measure = experiment.measure

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "measure", interrupted)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_config(QUICK), run_dir / ".hydra" / "config.yaml")  # as Hydra leaves it
    with pytest.raises(KeyboardInterrupt):
        run_experiment(compose_config(QUICK), run_dir, ["pool=max"], show_progress=False)
    first = read_metrics(run_dir)
    assert first["status"] == "interrupted" and first["resume_with"] == f"train.resume={run_dir}"
    out = capsys.readouterr().out.replace("\n", "")
    assert ("interrupted during evaluation: training finished and its checkpoint is saved; only the evaluation is "
            f"left; continue with: poolbench run pool=max 'train.resume={run_dir}'") in out
    monkeypatch.setattr(experiment, "measure", measure)
    resumed = run_experiment(compose_config([*QUICK, f"train.resume={run_dir}"]), tmp_path / "again", [],
                             show_progress=False)
    assert resumed["status"] == "complete" and resumed["history"] == first["history"]


def test_an_unexpected_error_is_recorded_with_its_type(tmp_path, monkeypatch):
    import poolbench.experiment as experiment

    def broken(*args, **kwargs):
        raise ValueError("bad batch")

    monkeypatch.setattr(experiment, "train", broken)
    with pytest.raises(ValueError):
        run_experiment(compose_config(QUICK), tmp_path, [], show_progress=False)
    assert read_metrics(tmp_path)["status"] == "failed" and read_metrics(tmp_path)["error"] == "ValueError: bad batch"


@pytest.mark.skipif(sys.platform == "win32", reason="run folders are locked with flock (Linux, macOS)")
def test_a_run_refused_by_its_folders_lock_writes_nothing_there(tmp_path):
    # A sweep job (any launcher) locks its folder here; a refused run must not write its own
    # "failed" metrics.json over the running one's.
    import fcntl

    with open(tmp_path / ".lock", "a") as other_run:
        fcntl.flock(other_run.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UsageError, match=f"Another poolbench run is using {tmp_path}"):
            run_experiment(compose_config(QUICK), tmp_path, [], show_progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]


def test_resuming_a_finished_run_ends_with_its_own_checkpoint_that_eval_reads(tmp_path):
    # A run whose training finished (complete, or stopped during evaluation) has nothing left to
    # train: the resumed run still keeps the checkpoint in its own folder.
    from omegaconf import OmegaConf

    first, second = tmp_path / "first", tmp_path / "second"
    for run_dir, overrides in ((first, []), (second, [f"train.resume={first}"])):
        cfg = compose_config([*QUICK, *overrides])
        (run_dir / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as Hydra leaves it
        metrics = run_experiment(cfg, run_dir, overrides, show_progress=False)
    assert metrics["status"] == "complete" and metrics["run"]["resumed_from"] == str(first)
    assert metrics["history"] == read_metrics(first)["history"]  # nothing was trained again
    assert (second / "model.pt").is_file()
    evaluated = cli("eval", str(second))
    assert evaluated.exit_code == 0, evaluated.output

    # a run config edited after training (another operator) no longer describes the weights: refused
    edited = OmegaConf.load(second / ".hydra" / "config.yaml")
    edited.pool = {"name": "avg"}
    OmegaConf.save(edited, second / ".hydra" / "config.yaml")
    refused = cli("eval", str(second))
    assert refused.exit_code == 2
    assert (f"{second / '.hydra' / 'config.yaml'} no longer matches the config its checkpoint was trained with: "
            "pool.name=avg (run has max); restore the file") in " ".join(refused.output.split())


# ---------------------------------------------------------------- evaluate_run

class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def _truncated_checkpoint(tmp_path):
    from poolbench.model import build_model

    torch.save({"model": build_model(compose_config(TINY)).state_dict()}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    return data[: len(data) // 2]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind, message", [
    ("truncated", "is damaged"), ("missing", "has no checkpoint model.pt"), ("pickled code", "is damaged")])
def test_eval_refuses_truncated_missing_or_unsafe_checkpoints(tmp_path, capsys, kind, message):
    content = {"truncated": _truncated_checkpoint(tmp_path), "missing": None,
               "pickled code": pickle.dumps(Payload())}[kind]
    run_dir = fake_run_dir(tmp_path / "run", content)
    with pytest.raises(UsageError, match=message):
        evaluate_run(run_dir)
    assert "this must never run" not in capsys.readouterr().out  # weights_only=True ran nothing


def test_eval_of_a_checkpoint_from_another_model_is_a_run_error(tmp_path):
    from poolbench.model import build_model
    from poolbench.results import save_checkpoint

    run_dir = fake_run_dir(tmp_path / "run", None)
    other = build_model(compose_config([*TINY, "model.channels=[4,8]"]))
    save_checkpoint(run_dir / "model.pt", {"model": other.state_dict()})
    with pytest.raises(RunError, match=f"The checkpoint in {run_dir} does not match its config"):
        evaluate_run(run_dir)


def test_eval_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(UsageError, match="not a poolbench run directory"):
        evaluate_run(tmp_path)


def test_a_job_whose_values_fail_the_check_says_so_in_its_folder(tmp_path):
    # a search sweeper's own search space (hydra.sweeper.params) reaches the job unchecked: the job's
    # folder then tells why nothing ran, rather than looking killed
    cfg = compose_config([*QUICK, "train.epochs=0"], check=False)
    with pytest.raises(UsageError, match="train.epochs must be a whole number of at least 1, got 0"):
        run_experiment(cfg, tmp_path, ["train.epochs=0"], show_progress=False)
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "failed" and metrics["error"].startswith("train.epochs must be")
    assert metrics["run"]["overrides"] == ["train.epochs=0"] and not (tmp_path / "model.pt").exists()
    from poolbench.sweep.rundir import read_run

    assert read_run(tmp_path).status == "failed"  # a table lists it with its sentence, not as damaged
    assert read_run(tmp_path).error.startswith("train.epochs must be")


def test_test_time_flip_is_the_protocol_of_every_pass_and_emulated_bf16_is_warned_about(tmp_path, capsys):
    # train.amp=true on a CPU without native bf16 (conftest pins that): a warning, and the run goes on
    cfg = compose_config([*QUICK, "eval.tta_flip=true", "train.amp=true"])
    metrics = run_experiment(cfg, tmp_path, [], show_progress=False)
    out = " ".join(capsys.readouterr().out.split())
    assert "train.amp=true on a CPU without native bf16" in out and "train.amp=auto" in out
    assert metrics["status"] == "complete" and metrics["throughput"]["matmul_dtype"] == "bfloat16"
    assert metrics["protocol"]["train"]["precision"] == "bfloat16"
    from poolbench.results import recipe_text

    assert "bf16 autocast" in recipe_text(metrics["protocol"])
    assert metrics["protocol"]["eval"]["tta_flip"] is True and metrics["invariance"]["tta_flip"] is True
    # training's last test pass (flip averaged too) is the unshifted pass the accuracy comes from
    assert metrics["accuracy"]["test"] == metrics["history"][-1]["test_accuracy"]
    from poolbench.data import load_dataset
    from poolbench.data.transforms import Normalizer
    from poolbench.evaluate import predict
    from poolbench.model import inference_copy
    from poolbench.results import load_checkpoint
    from poolbench.runtime import autocast_for, model_on

    cpu = torch.device("cpu")
    model = model_on(cfg, cpu)
    model.load_state_dict(load_checkpoint(tmp_path / "model.pt")["model"])
    data = load_dataset(cfg.data)
    normalize = Normalizer(cfg.data.mean, cfg.data.std, cpu, cfg.train.channels_last)
    flipped = predict(inference_copy(model), data.test_x, normalize, int(cfg.eval.batch_size),
                      autocast_for(cpu, True), flip=True)
    assert (flipped == data.test_y).float().mean().item() == pytest.approx(metrics["accuracy"]["test"])
