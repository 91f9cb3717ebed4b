"""The Python API (poolbench/api.py): the README's example as written, a run folder the CLI accepts,
load_run's model, and nothing global changed by importing or running."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import SWEEP_TINY, cli

import poolbench
from poolbench.errors import UsageError

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The README's Python API example: its one ```python block."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README should hold exactly one ```python block: the API example"
    return blocks[0]


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    metrics = namespace["metrics"]
    assert metrics["status"] == "complete" and 0 <= metrics["accuracy"]["test"] <= 1
    run_dir = Path(metrics["run_dir"])
    assert {".hydra", "metrics.json", "model.pt", "poolbench.log"} <= {p.name for p in run_dir.iterdir()}
    assert namespace["trained"].model.training is False
    assert namespace["table"]["rows"][0]["n"] == 1


def test_a_run_folder_from_python_is_one_the_cli_reads_again(tmp_path):
    metrics = poolbench.run([*SWEEP_TINY, "threads=1", f"hydra.run.dir={tmp_path / 'r'}"])
    run_dir = tmp_path / "r"
    assert metrics["run_dir"] == str(run_dir)
    assert json.loads((run_dir / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    assert (run_dir / ".hydra" / "overrides.yaml").read_text().count("data.train_size=192") == 1
    assert "status: complete" in (run_dir / "poolbench.log").read_text()
    again = cli("eval", str(run_dir))
    assert again.exit_code == 0, again.output
    table = poolbench.compare([run_dir])
    assert table["rows"][0]["metrics"]["accuracy"]["mean"] == pytest.approx(metrics["accuracy"]["test"])

    trained = poolbench.load_run(run_dir)
    assert trained.config.data.name == "shapes" and trained.mean == (0.1,) and trained.std == (0.25,)
    images = torch.full((2, 1, 28, 28), 255, dtype=torch.uint8)
    with torch.inference_mode():
        assert trained.model(trained.normalize(images)).shape == (2, 10)


def test_bad_overrides_raise_before_a_folder_exists(tmp_path):
    with pytest.raises(UsageError, match="lists several values"):
        poolbench.run(["pool=max,avg", f"hydra.run.dir={tmp_path / 'x'}"])
    assert not (tmp_path / "x").exists()
    with pytest.raises(UsageError, match="not a poolbench run directory"):
        poolbench.load_run(tmp_path)


def test_importing_poolbench_changes_no_global_state():
    """A fresh interpreter, as a notebook: backend, logging and threads before and after the imports."""
    probe = """
import logging, matplotlib, torch
state = lambda: (matplotlib.rcParams._get_backend_or_none(), logging.getLogger().level,
                 [type(h).__name__ for h in logging.getLogger().handlers], torch.get_num_threads(),
                 sorted(logging.Logger.manager.loggerDict.get('matplotlib', logging.getLogger('x')).__dict__.keys()))
before = state()
import poolbench, poolbench.api, poolbench.cli, poolbench.sweep.plots, poolbench.sweep.summary
assert dir(poolbench) == ['LoadedRun', '__version__', 'compare', 'load_run', 'run'], dir(poolbench)
assert state() == before, (before, state())
print("unchanged")
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "unchanged", result.stderr
