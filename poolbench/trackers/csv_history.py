"""logger=csv: history.csv in the run directory, one row per finished epoch.

The rows are metrics.json's `history` records, the columns their keys (train.py makes them), so
the two files never disagree. The whole file is rewritten atomically after each epoch (it is a
few hundred bytes): a killed run leaves every finished epoch in a readable file.
"""

from __future__ import annotations

import csv
import io

from poolbench.results import write_text


class Tracker:
    def __init__(self, settings: dict, run):
        self.path = run.run_dir / str(settings["file"])
        self.rows: list[dict] = []
        write_text(self.path, "")  # there from the start: a run that stops before its first epoch has an empty one

    def log_epoch(self, record: dict) -> None:
        self.rows.append(dict(record))
        columns = list(dict.fromkeys(key for row in self.rows for key in row))  # a resumed old run may lack some
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, text.getvalue())

    def log_final(self, scalars: dict, step: int) -> None:
        pass  # the final metrics are in metrics.json

    def close(self, status: str) -> None:
        pass
