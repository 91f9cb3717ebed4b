"""The quiet timing pass: after a sweep's jobs, every configuration timed alone, in one process.

Jobs time themselves while other jobs share the machine (a joblib sweep runs one per core),
which is fine for a job's own record but not for ranking: a neighbour's load moves each
figure by more than operators differ. This pass builds each configuration's network (fresh
weights: speed does not depend on trained values) and times inference and a training step at
the configuration's own `eval.throughput` batch size, warm-up and iterations, with the jobs'
thread count, in interleaved rounds (round r times every configuration before round r+1
starts), so a drift in the machine's load hits every configuration alike. Its result,
timing.json beside the runs, is what the table's speed columns and Pareto front rank by
(sweep/aggregate.py); each job's own timing stays in its metrics.json.
"""

from __future__ import annotations

import collections
from datetime import datetime, timezone
from pathlib import Path

import torch
from hydra.experimental.callback import Callback

from poolbench.config import compose_config, load_run_config
from poolbench.environment import environment
from poolbench.errors import UsageError
from poolbench.model import inference_copy
from poolbench.report import console as default_console
from poolbench.results import write_json
from poolbench.runtime import autocast_for, model_on, prepare_process, select_device
from poolbench.speed import throughput
from poolbench.sweep.aggregate import TIMING_FILE, config_key
from poolbench.sweep.rundir import find_run_dirs, read_run


def time_configurations(paths: list[Path], out_dir: Path, console=default_console) -> Path | None:
    """Time every configuration with a complete run below `paths`; write out_dir/timing.json.

    Returns the file, or None when there is nothing to time or `eval.throughput.rounds` is 0.
    """
    try:
        records = [read_run(d) for d in find_run_dirs(paths)]
    except UsageError:
        return None
    chosen: dict[tuple, object] = {}
    threads = collections.Counter()
    for record in records:
        if record.complete:
            chosen.setdefault(config_key(record.config), record)
            threads[int(record.metrics.get("run", {}).get("threads") or 0)] += 1
    if not chosen:
        return None
    configs = {key: load_run_config(record.path) for key, record in chosen.items()}
    # runs saved before eval.throughput.rounds existed get today's default
    rounds = next(iter(configs.values())).eval.throughput.get("rounds")
    rounds = int(compose_config([]).eval.throughput.rounds if rounds is None else rounds)
    if rounds < 1:
        return None
    thread_count = threads.most_common(1)[0][0] or None
    prepare_process(thread_count if thread_count else "auto")
    subjects = {key: _subject(cfg) for key, cfg in configs.items()}
    timed = {key: {"infer_images_per_s": [], "train_images_per_s": []} for key in subjects}
    with console.status("") as status:
        for round_number in range(rounds):
            for key, subject in subjects.items():
                status.update(f"quiet timing, round {round_number + 1}/{rounds}: {chosen[key].path.name}")
                speed = throughput(**subject)
                for metric, values in timed[key].items():
                    values.append(speed[metric])
    first = next(iter(subjects.values()))
    result = {
        "schema": 1,
        "what": "every configuration timed alone after the jobs, in interleaved rounds (poolbench.timing)",
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(first["device"], torch.get_num_threads()),
        "configurations": [{"config": chosen[key].config, "run": str(chosen[key].path),
                            "batch_size": subjects[key]["batch_size"], **timed[key]} for key in subjects],
    }
    path = Path(out_dir) / TIMING_FILE
    write_json(path, result)
    console.print(f"quiet timing pass: {len(subjects)} configurations x {rounds} rounds, "
                  f"{torch.get_num_threads()} threads: [bold]{path}[/]", soft_wrap=True)
    return path


def _subject(cfg) -> dict:
    """throughput()'s arguments for one configuration: its network on fresh weights."""
    device = select_device(str(cfg.device))
    torch.manual_seed(int(cfg.seed))
    tp = cfg.eval.throughput
    model = model_on(cfg, device)
    return {"model": model, "inference_model": inference_copy(model),  # what evaluation and the jobs time
            "input_shape": (int(cfg.data.channels), int(cfg.data.image_size), int(cfg.data.image_size)),
            "num_classes": int(cfg.data.num_classes), "device": device, "batch_size": int(tp.batch_size),
            "warmup": int(tp.warmup), "iters": int(tp.iters), "autocast": autocast_for(device, cfg.train.amp),
            "channels_last": bool(cfg.train.channels_last)}


class QuietTiming(Callback):
    """Configured in configs/config.yaml (hydra.callbacks) after `aggregate`: Hydra runs the end
    callbacks in reverse order, so the timing pass comes first and the table ranks by it."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            time_configurations([sweep_dir], sweep_dir)
        except Exception as err:  # the table still comes; it says its speeds are the jobs' own
            default_console.print(f"[yellow]no quiet timing pass:[/] {type(err).__name__}: {err}", soft_wrap=True)
