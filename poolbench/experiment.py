"""One experiment from a composed config: data -> model -> train -> evaluate -> results.

`run_experiment` is what every Hydra job runs (single run or multirun, any launcher);
`evaluate_run` re-measures a saved run from its checkpoint and config.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.markup import escape

from poolbench.config import load_run_config, validate
from poolbench.data import load_dataset
from poolbench.data.transforms import Normalizer
from poolbench.environment import environment
from poolbench.errors import PoolbenchError, RunError, UsageError
from poolbench.evaluate import invariance
from poolbench.model import count_params, inference_copy
from poolbench.report import TrainProgress, config_summary, console, results_table, shift_table
from poolbench.results import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    load_checkpoint,
    new_metrics,
    run_dir_lock,
    run_protocol,
    write_json,
)
from poolbench.runtime import (
    autocast_for,
    bf16_is_native,
    compute_dtype,
    model_on,
    prepare_process,
    select_device,
    stop_on_signals,
)
from poolbench.speed import add_mfu, count_flops, dtype_name, matmul_rate_once, throughput
from poolbench.trackers import Trackers, final_scalars, open_trackers
from poolbench.train import load_resume, settings_differ, train

log = logging.getLogger(__name__)


def run_experiment(cfg, run_dir: Path, overrides: list[str], show_progress: bool = True) -> dict:
    """Train and evaluate one configuration; metrics.json is written whatever happens.

    Ctrl-C or SIGTERM during training checkpoints after the current step and records
    "status": "interrupted"; `train.resume=RUN_DIR` goes on from there. The run holds `run_dir`'s
    lock throughout: a folder another run is using is refused before anything is written to it.
    """
    with run_dir_lock(run_dir), stop_on_signals() as stop:
        return _run_experiment(cfg, run_dir, overrides, show_progress, stop)


def _run_experiment(cfg, run_dir: Path, overrides: list[str], show_progress: bool, stop) -> dict:
    started = time.perf_counter()
    run_dir = Path(run_dir)
    try:
        validate(cfg)  # the CLI checked already; a search sweeper's own values (hydra.sweeper.params) were not
    except PoolbenchError as err:  # the job's folder exists: it says why nothing ran, not "killed"
        refused = new_metrics({"pool": str(cfg.pool.get("name")), "dataset": str(cfg.data.get("name")),
                               "seed": cfg.get("seed"), "device": str(cfg.get("device")),
                               "overrides": list(overrides)})
        write_json(run_dir / METRICS_FILE, {**refused, "status": "failed", "error": str(err)})
        raise
    prepare_process(cfg.threads)
    device = select_device(str(cfg.device))
    metrics = _start_metrics(cfg, device, {"overrides": list(overrides), "threads": torch.get_num_threads()})
    console.print(config_summary(cfg, device.type))
    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    trackers = Trackers()  # none open yet
    phase = "setup"  # what an interrupt stops: setup (nothing kept yet), training, evaluation

    def epoch_done(record: dict) -> None:  # one line per epoch in the log file; the trackers mirror the history
        log.info("epoch %d/%d: %s", record["epoch"], int(cfg.train.epochs), _pairs(record, skip="epoch"))
        trackers.log_epoch(record)

    try:
        resume = load_resume(cfg) if cfg.train.get("resume") else None
        trackers = open_trackers(cfg, run_dir)
        if resume is not None:
            metrics["run"]["resumed_from"] = str(cfg.train.resume)
            for record in resume["history"]:  # this run's metrics.json carries the earlier epochs too
                trackers.log_epoch(record)
        data = load_dataset(cfg.data).to(device)
        log.info("data: %s from %s", data.name, data.source)
        if data.unverified:  # data.allow_checksum_mismatch=true let these through: the run says so
            metrics["run"]["checksum_mismatch"] = data.unverified
            console.print(f"[yellow]warning:[/] used despite an MD5 mismatch: {', '.join(data.unverified)}",
                          soft_wrap=True)
        if cfg.train.amp is True and not bf16_is_native(device):
            console.print("[yellow]warning:[/] train.amp=true on a CPU without native bf16: bf16 is emulated and "
                          "training may run up to 10x slower; train.amp=auto uses bf16 only where it is native.",
                          soft_wrap=True)
        torch.manual_seed(int(cfg.seed))
        model = model_on(cfg, device)
        phase = "training"
        with TrainProgress() if show_progress else contextlib.nullcontext() as progress:
            state = train(cfg, model, data, device, run_dir / CHECKPOINT_FILE, progress=progress,
                          resume=resume, stop=stop, on_epoch=epoch_done)
        phase = "evaluation"
        metrics["history"] = state.history
        metrics["time"]["train_s"] = state.train_seconds
        eval_started = time.perf_counter()
        metrics.update(measure(cfg, model, data, device, state.test_predictions))
        metrics["time"]["eval_s"] = time.perf_counter() - eval_started
        metrics["status"] = "complete"
    except KeyboardInterrupt as err:
        metrics["status"] = "interrupted"
        if hasattr(err, "state"):  # stopped cleanly between steps: a checkpoint is there to resume
            metrics["history"] = err.state.history
            metrics["time"]["train_s"] = err.state.train_seconds
        _say_what_was_kept(metrics, phase, run_dir, overrides, checkpointed=hasattr(err, "state"))
        raise
    except PoolbenchError as err:
        metrics["status"] = "failed"
        metrics["error"] = str(err)
        raise
    except Exception as err:
        metrics["status"] = "failed"
        metrics["error"] = f"{type(err).__name__}: {err}"
        raise
    finally:
        metrics["time"]["total_s"] = time.perf_counter() - started
        write_json(run_dir / METRICS_FILE, metrics)
        log.info("results: %s", _pairs(final_scalars(metrics)))
        log.info("status: %s", metrics["status"])
        trackers.log_final(metrics)  # after metrics.json: the file is the record, trackers mirror it
        trackers.close(metrics["status"])
    console.print(results_table(metrics))
    console.print(shift_table(metrics))
    console.print(f"run directory: [bold]{run_dir}[/]")
    return metrics


def _say_what_was_kept(metrics: dict, phase: str, run_dir: Path, overrides: list[str], checkpointed: bool) -> None:
    """After Ctrl-C or SIGTERM: what the run kept and the command that goes on (shell-quoted).
    `checkpointed`: training stopped between steps and saved a checkpoint (TrainingInterrupted); a
    second signal mid-epoch leaves the last epoch's checkpoint, if there is one yet."""
    if not (checkpointed or (phase != "setup" and (run_dir / CHECKPOINT_FILE).is_file())):
        again = shlex.join(overrides)
        console.print(f"interrupted before training started: nothing to keep; run it again with: "
                      f"poolbench run {escape(again)}", soft_wrap=True)
        return
    metrics["resume_with"] = f"train.resume={run_dir}"
    again = shlex.join([o for o in overrides if not o.startswith("train.resume=")] + [f"train.resume={run_dir}"])
    kept = {"training": "checkpoint saved",
            "evaluation": "training finished and its checkpoint is saved; only the evaluation is left"}[phase]
    console.print(f"interrupted during {phase}: {kept}; continue with: poolbench run {escape(again)}", soft_wrap=True)


def _pairs(values: dict, skip: str = "") -> str:
    """`key=value ...` for a log line: short, and greppable by the names metrics.json uses."""
    return " ".join(f"{key}={value:.6g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in values.items() if key != skip)


def _start_metrics(cfg, device: torch.device, run_info: dict) -> dict:
    """A new metrics.json for `cfg` on `device`: what ran, where (environment) and under which
    recipe and test protocol."""
    metrics = new_metrics({"pool": cfg.pool.name, "dataset": cfg.data.name, "seed": int(cfg.seed),
                           "device": device.type, **run_info})
    metrics["environment"] = environment(device, torch.get_num_threads())
    metrics["protocol"] = run_protocol(cfg)
    # train.amp=auto depends on the machine: record the precision this run trains in (bf16 or fp32)
    metrics["protocol"]["train"]["precision"] = dtype_name(compute_dtype(device, cfg.train.amp))
    return metrics


def measure(cfg, model, data, device, test_predictions: torch.Tensor | None = None) -> dict:
    """Accuracy, invariance, throughput with MFU, params and FLOPs of a trained model.

    `test_predictions`: the trained model's unshifted test predictions if training's last
    epoch already made them (the same inference copy and batches), saving one test pass.
    """
    normalize = Normalizer(cfg.data.mean, cfg.data.std, device, cfg.train.channels_last)
    autocast = autocast_for(device, cfg.train.amp)
    inference = inference_copy(model)
    results = invariance(inference, data.test_x, data.test_y, normalize, cfg.eval, autocast, test_predictions)
    input_shape = (int(cfg.data.channels), int(cfg.data.image_size), int(cfg.data.image_size))
    flops, uncounted = count_flops(model, input_shape)
    tp = cfg.eval.throughput
    speed = throughput(model, input_shape, int(cfg.data.num_classes), device, int(tp.batch_size),
                       int(tp.warmup), int(tp.iters), autocast_for(device, cfg.train.amp),
                       bool(cfg.train.channels_last), inference_model=inference)
    # MFU against the matmul rate of the precision the model runs in (bf16 under autocast)
    speed = add_mfu(speed, flops, matmul_rate_once(device, compute_dtype(device, cfg.train.amp)))
    return {
        "accuracy": {"test": results["accuracy"]},
        "invariance": results["invariance"],
        "throughput": speed,
        # flops_uncounted: ops that ran but have no FLOP formula, so flops_per_image is a lower bound
        "model": {"params": count_params(model), "flops_per_image": flops, "flops_uncounted": uncounted},
    }


def evaluate_run(run_dir: Path) -> dict:
    """Reload a run's config and checkpoint, measure it again and print the same tables."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    edited = settings_differ(cfg, checkpoint["config"]) if "config" in checkpoint else []
    if edited:  # .hydra/config.yaml changed after training: measuring would mislabel the weights
        raise UsageError(f"{run_dir / '.hydra' / 'config.yaml'} no longer matches the config its checkpoint was "
                         f"trained with: {', '.join(edited[:4])}; restore the file, or rerun the experiment.")
    prepare_process(cfg.threads)
    device = select_device(str(cfg.device))
    started = time.perf_counter()
    data = load_dataset(cfg.data).to(device)
    model = model_on(cfg, device)
    try:
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError):
        raise RunError(f"The checkpoint in {run_dir} does not match its config: rerun the experiment.") from None
    metrics = _start_metrics(cfg, device, {"source_run": str(run_dir)})
    metrics.update(measure(cfg, model, data, device))
    metrics["history"] = checkpoint.get("history", [])
    metrics["time"] = {"train_s": checkpoint.get("train_seconds", 0.0), "eval_s": time.perf_counter() - started}
    metrics["time"]["total_s"] = metrics["time"]["eval_s"]
    metrics["status"] = "complete"
    console.print(results_table(metrics, title=f"re-evaluated: {run_dir}"))
    console.print(shift_table(metrics))
    return metrics
