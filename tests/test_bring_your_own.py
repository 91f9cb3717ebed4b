"""A user's operator in their own file, with no line of poolbench changed: run, eval, a sweep
against max, a rerun of that sweep, compare; and the sentences when it is gone or breaks the contract."""

import json
import sys

import pytest
from helpers import SWEEP_TINY, TINY, cli

OPERATOR = '''
import torch.nn.functional as F
from torch import nn


class MedianPool(nn.Module):
    """Median of each 2x2 window, stride 2."""

    def __init__(self, channels, window=2):
        super().__init__()
        self.window = window

    def forward(self, x):
        n, c, h, w = x.shape
        k = self.window
        patches = F.unfold(x, k, stride=k).view(n, c, k * k, -1)
        return patches.median(dim=2).values.view(n, c, h // k, w // k)


class Grows(nn.Module):
    def __init__(self, channels):
        super().__init__()

    def forward(self, x):
        return x.repeat(1, 1, 2, 2)
'''


@pytest.fixture
def user_folder(tmp_path, monkeypatch, request):
    """The user's folder: their operator module (a name of its own per test) and a pool config."""
    module = f"myops_{request.node.name.split('[')[0][-20:]}"
    (tmp_path / f"{module}.py").write_text(OPERATOR)
    (tmp_path / "my_configs" / "pool").mkdir(parents=True)
    (tmp_path / "my_configs" / "pool" / "median.yaml").write_text(
        f"name: median\n_target_: {module}.MedianPool\nwindow: 2\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path, module
    sys.modules.pop(module, None)


def metrics(run_dir):
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {"run": {}}


def test_run_eval_and_the_recorded_target(user_folder):
    folder, module = user_folder
    result = cli("run", "pool=custom", f"pool._target_={module}.MedianPool", *SWEEP_TINY, "threads=1",
                 f"hydra.run.dir={folder}/run")
    assert result.exit_code == 0, result.output
    saved = metrics(folder / "run")
    assert saved["status"] == "complete"
    assert "aten.median" in saved["model"]["flops_uncounted"]  # FLOPs admit what they miss
    assert "+?" in result.output
    again = cli("eval", str(folder / "run"))
    assert again.exit_code == 0, again.output
    assert f"{100 * saved['accuracy']['test']:.2f}%" in again.output
    # the module is gone: one sentence naming the fix, exit 2
    (folder / f"{module}.py").unlink()
    sys.modules.pop(module, None)
    gone = cli("eval", str(folder / "run"))
    assert gone.exit_code == 2 and f"no module named '{module}'" in gone.output and "Traceback" not in gone.output


@pytest.mark.slow  # three sweeps (4-8 s); rerun and resume have default-suite tests in test_sweep_callback
def test_config_from_the_users_folder_sweeps_against_max_reruns_nothing_and_resumes(user_folder, no_plots):
    folder, _ = user_folder
    args = ["pool=median,max", "seed=0", "hydra.searchpath=[file://my_configs]", *SWEEP_TINY, "threads=1",
            f"hydra.sweep.dir={folder}/sweep"]
    first = cli("sweep", *args)
    assert first.exit_code == 0, first.output
    table = json.loads((folder / "sweep" / "summary.json").read_text())
    assert sorted(row["configuration"]["pool"] for row in table["rows"]) == ["max", "median"]
    second = cli("sweep", *args)
    assert second.exit_code == 0 and second.output.count("already complete") == 2, second.output
    # a job killed before its metrics.json (its checkpoint kept) resumes: the target is imported again
    median_job = next(p.parent for p in (folder / "sweep").glob("*/metrics.json")
                      if json.loads(p.read_text())["run"]["pool"] == "median")  # long job names are cut
    (median_job / "metrics.json").unlink()
    third = cli("sweep", *args)
    assert third.exit_code == 0 and "continuing the stopped run" in third.output, third.output
    resumed = [m for m in map(metrics, (folder / "sweep").glob("*/")) if m["run"].get("resumed_from")]
    assert len(resumed) == 1 and resumed[0]["status"] == "complete" and resumed[0]["run"]["pool"] == "median"
    compared = cli("compare", str(folder / "sweep"), "-o", str(folder / "cmp"))
    assert compared.exit_code == 0 and "median" in compared.output


def test_an_operator_that_breaks_the_contract_is_stopped_before_training(user_folder):
    folder, module = user_folder
    result = cli("run", "pool=custom", f"pool._target_={module}.Grows", *TINY, f"hydra.run.dir={folder}/bad")
    assert result.exit_code == 2
    assert "breaks the operator contract (output size)" in result.output
    assert not (folder / "bad").exists()


def test_custom_without_a_target_and_unknown_options_are_usage_errors(user_folder):
    folder, module = user_folder
    assert "pool=custom needs pool._target_" in cli("run", "pool=custom", *TINY).output
    result = cli("run", "pool=custom", f"pool._target_={module}.MedianPool", "+pool.size=3", *TINY)
    assert result.exit_code == 2 and "pool.size is not an option" in result.output


def run_with_own_pool_file(tmp_path, text: str):
    """`poolbench run pool=mine` with my_configs/pool/mine.yaml holding `text`, found through
    hydra.searchpath: (the file, the result, its output on one line)."""
    own = tmp_path / "my_configs" / "pool" / "mine.yaml"
    own.parent.mkdir(parents=True)
    own.write_text(text)
    result = cli("run", "pool=mine", f"hydra.searchpath=[file://{own.parent.parent}]", *TINY,
                 f"hydra.run.dir={tmp_path / 'run'}")
    return own, result, " ".join(result.output.split())


def test_a_config_file_of_ones_own_that_is_not_yaml_is_named_with_its_line(tmp_path):
    broken, result, said = run_with_own_pool_file(tmp_path, "name: mine\n_target_: [unclosed\n")
    assert result.exit_code == 2, result.output
    assert f"The config file {broken}, line 3, column 1 is not valid YAML (expected ',' or ']'" in said
    assert "fix it there." in said and "Traceback" not in result.output and "unexpected" not in said
    assert not (tmp_path / "run").exists()


def test_a_config_file_of_ones_own_that_holds_a_list_says_to_write_keys(tmp_path):
    _, result, said = run_with_own_pool_file(tmp_path, "- max\n- avg\n")
    assert result.exit_code == 2, result.output
    assert "The pool config is not a set of keys (a pool/<name>.yaml file of your own" in said
    assert "write it as `key: value` lines." in said and not (tmp_path / "run").exists()
