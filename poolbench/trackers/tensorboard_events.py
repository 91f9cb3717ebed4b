"""logger=tensorboard: TensorBoard event files in the run directory (`logger.tensorboard.dir`).

torch's SummaryWriter writes them (it needs only the `tensorboard` package). Per-epoch scalars
use the history's keys with the epoch as step; the final metrics are written at the last epoch's
step; the hyperparameters go to the HParams dashboard when the run ends, with the final metrics as
its columns. A sweep needs no grouping of its own: its jobs' folders sit side by side under the
sweep directory, so `tensorboard --logdir <sweep dir>` shows exactly the sweep.
"""

from __future__ import annotations

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from poolbench.trackers import flatten, is_number


class Tracker:
    def __init__(self, settings: dict, run):
        self.writer = SummaryWriter(log_dir=str(run.run_dir / str(settings["dir"])))
        self.params = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
                       for key, value in flatten(run.config).items()}
        self.final: list[str] = []

    def log_epoch(self, record: dict) -> None:
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and is_number(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()  # visible in a running TensorBoard after every epoch

    def log_final(self, scalars: dict, step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.final = list(scalars)

    def close(self, status: str) -> None:
        experiment, session_start, session_end = hparams(self.params, dict.fromkeys(self.final, 0))
        self.writer.file_writer.add_summary(experiment)
        self.writer.file_writer.add_summary(session_start)
        if status == "complete":  # torch can only say "success": a stopped or failed run ends without a status
            self.writer.file_writer.add_summary(session_end)
        self.writer.close()
