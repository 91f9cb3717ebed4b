"""logger=wandb: one Weights & Biases run per poolbench run, offline by default.

Offline (`logger.wandb.mode`) needs no account and no network: W&B writes the run into
`<run dir>/<logger.wandb.dir>/wandb/offline-run-*`, and `wandb sync` uploads it later. The jobs of
a sweep share a W&B group named by the sweep directory. W&B is told to stay quiet and leave the
console alone (rich owns it) through its run settings rather than WANDB_* environment variables,
which would outlive the run in a Python caller's process; `reinit="create_new"` keeps a caller's
own active run untouched. Per-epoch scalars go to the history (step = epoch), the final metrics
to the run summary.
"""

from __future__ import annotations

import wandb

from poolbench.trackers import is_number

SETTINGS = dict(silent=True, console="off", disable_git=True, save_code=False, disable_job_creation=True,
                x_disable_stats=True)


class Tracker:
    def __init__(self, settings: dict, run):
        folder = run.run_dir / str(settings["dir"])
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=settings["project"], entity=settings["entity"],
                              mode=str(settings["mode"]), dir=str(folder), name=run.name,
                              group=run.group, config=run.config, reinit="create_new",
                              settings=wandb.Settings(**SETTINGS))

    def log_epoch(self, record: dict) -> None:
        self.run.log({key: value for key, value in record.items() if key != "epoch" and is_number(value)},
                     step=int(record["epoch"]))

    def log_final(self, scalars: dict, step: int) -> None:
        self.run.summary.update(scalars)

    def close(self, status: str) -> None:
        self.run.summary["status"] = status
        self.run.finish(exit_code=0 if status == "complete" else 1)
