"""Hyperparameter search with Hydra's Optuna sweeper: `optimized_metric` makes each job return one
number, the override check accepts Optuna's search spaces, and three trials complete."""

import pytest
import yaml
from helpers import SWEEP_TINY, cli, sweep_metrics

from poolbench.errors import RunError
from poolbench.results import metric_value

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")


def test_two_optuna_trials_complete_and_the_best_value_is_the_best_jobs(tmp_path, no_plots):
    sweep_dir = tmp_path / "search"
    result = cli("run", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
                 "hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=0",
                 "optimized_metric=invariance.consistency", "train.lr=tag(log,interval(0.01,0.3))",
                 *SWEEP_TINY, "eval.throughput.rounds=0", "threads=1", f"hydra.sweep.dir={sweep_dir}")
    assert result.exit_code == 0, result.output
    jobs = sweep_metrics(sweep_dir)
    assert len(jobs) == 2 and all(job["status"] == "complete" for job in jobs)
    lrs = {float(o.split("=", 1)[1]) for job in jobs for o in job["run"]["overrides"] if o.startswith("train.lr=")}
    assert len(lrs) == 2 and all(0.01 <= lr <= 0.3 for lr in lrs)
    # each job's folder is named by the swept key, not cut short by the fixed ones
    assert sorted(p.name.split("_", 1)[1].split("=")[0] for p in sweep_dir.glob("[0-9]_*")) == ["train.lr"] * 2
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(job["invariance"]["consistency"] for job in jobs)


def test_metric_value_reads_a_path_and_refuses_a_missing_number():
    metrics = {"status": "complete", "accuracy": {"test": 0.9}, "invariance": {"shift_accuracy": {"2": 0.8}}}
    assert metric_value(metrics, "accuracy.test") == 0.9
    assert metric_value(metrics, "invariance.shift_accuracy.2") == 0.8
    with pytest.raises(RunError, match="no number at optimized_metric=invariance.consistency"):
        metric_value(metrics, "invariance.consistency")


@pytest.mark.slow
def test_the_readme_search_example_runs_as_written(tmp_path):
    import re
    import shlex
    from pathlib import Path

    from helpers import run_cli

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    command = re.search(r"\n    (poolbench run -m hydra/sweeper=optuna .*?)\n\n", readme, flags=re.S).group(1)
    args = shlex.split(command.replace("\\\n", " "))[1:]
    result = run_cli(*args, "hydra.sweep.dir=search", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Best value" in result.stdout and len(list((tmp_path / "search").glob("*/metrics.json"))) == 3
