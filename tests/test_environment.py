"""`environment`: what every metrics.json and bench JSON records about where it came from."""

import datetime
import json
import platform
import re
import subprocess
from importlib import metadata

import pytest
import torch

from poolbench import environment as env_module
from poolbench.environment import environment

KEYS = {"poolbench", "git", "python", "torch", "torchvision", "platform", "cpu", "gpu", "threads", "malloc",
        "started"}


def test_every_key_with_a_sane_value():
    env = environment(torch.device("cpu"), 3)
    assert set(env) == KEYS
    assert env["poolbench"] == metadata.version("poolbench") and env["torchvision"] == metadata.version("torchvision")
    assert env["python"] == platform.python_version() and env["torch"] == torch.__version__
    assert isinstance(env["cpu"], str) and env["cpu"] and isinstance(env["platform"], str) and env["platform"]
    assert env["gpu"] is None and env["threads"] == 3 and env["malloc"] in ("tuned", "user", "system")
    started = datetime.datetime.fromisoformat(env["started"])
    assert started.tzinfo is not None  # with its time zone
    assert abs(datetime.datetime.now(datetime.timezone.utc) - started) < datetime.timedelta(minutes=1)
    assert json.loads(json.dumps(env)) == env


def test_the_commit_of_this_checkout():
    repo = env_module.PACKAGE_DIR.parent
    if not (repo / ".git").exists():
        pytest.skip("poolbench is not running from a git checkout")
    git = environment(torch.device("cpu"), 1)["git"]
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and git["commit"] == head.strip()
    assert isinstance(git["dirty"], bool)


@pytest.mark.parametrize("where", ["no checkout", "a broken .git", "no git program"])
def test_no_commit_is_null_never_an_error(tmp_path, monkeypatch, capfd, where):
    monkeypatch.setattr(env_module, "PACKAGE_DIR", tmp_path / "poolbench")
    if where == "a broken .git":
        (tmp_path / ".git").write_text("gitdir: /nowhere\n")
    if where == "no git program":
        (tmp_path / ".git").mkdir()
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert environment(torch.device("cpu"), 1)["git"] is None
    assert capfd.readouterr().err == ""


def test_the_gpu_is_named_for_a_cuda_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU 80GB")
    assert environment(torch.device("cuda"), 1)["gpu"] == "Fake GPU 80GB"

    def unavailable(device=None):
        raise RuntimeError("no CUDA")

    monkeypatch.setattr(torch.cuda, "get_device_name", unavailable)
    assert environment(torch.device("cuda"), 1)["gpu"] is None
