import json
import sys

import pytest
import torch

from poolbench.errors import UsageError
from poolbench.results import load_checkpoint, read_metrics, run_dir_lock, save_checkpoint, write_json, write_text


def test_write_json_replaces_atomically_and_nan_becomes_null(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": None}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp files left


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    save_checkpoint(tmp_path / "model.pt", {"model": {"w": torch.ones(2)}, "epoch": 3})
    assert torch.load(tmp_path / "model.pt", weights_only=True)["epoch"] == 3
    assert load_checkpoint(tmp_path / "model.pt")["model"]["w"].sum() == 2


@pytest.mark.skipif(sys.platform == "win32", reason="run folders are locked with flock (Linux, macOS)")
def test_a_run_folder_lock_is_held_for_the_block_reentrant_in_one_process_and_released(tmp_path):
    import fcntl

    run_dir = tmp_path / "run"
    with run_dir_lock(run_dir):
        with run_dir_lock(run_dir):  # the CLI holds a single run's folder, then the run takes it again
            pass
        with open(run_dir / ".lock") as other, pytest.raises(BlockingIOError):  # still held
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(run_dir / ".lock") as other:  # released
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_damaged_files_are_usage_errors(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"garbage")
    (tmp_path / "metrics.json").write_text("{")
    with pytest.raises(UsageError, match="damaged"):
        load_checkpoint(tmp_path / "model.pt")
    with pytest.raises(UsageError, match="damaged"):
        read_metrics(tmp_path)


def test_a_write_that_dies_halfway_leaves_the_previous_file_whole(tmp_path):
    save_checkpoint(tmp_path / "model.pt", {"epoch": 1, "w": torch.ones(1000)})
    with pytest.raises(Exception):  # torch.save has written the tensor when it meets the lambda
        save_checkpoint(tmp_path / "model.pt", {"epoch": 2, "w": torch.zeros(100000), "bad": lambda: 0})
    assert load_checkpoint(tmp_path / "model.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_written_files_read_like_any_other_file(tmp_path):
    import os
    import stat

    write_text(tmp_path / "summary.md", "# t\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "summary.md").stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert (tmp_path / "summary.md").read_text() == "# t\n"


def test_the_recipe_is_named_in_one_line():
    from poolbench.config import compose_config
    from poolbench.results import recipe_text, run_protocol

    plain = recipe_text(run_protocol(compose_config(["data=shapes"])))
    assert plain.startswith("3 epochs, batch 64, SGD Nesterov lr 0.1 one-cycle linear (25% warm-up)")
    assert "no augmentation" in plain and "own number of draws (eval.draws=auto)" in plain
    assert "lookahead" not in plain
    other = recipe_text(run_protocol(compose_config(
        ["data=shapes", "train.batch_size=256", "train.momentum=0", "train.augment.shift=2",
         "train.augment.flip=true", "eval.draws=8", "train.lookahead=0.8"])))
    assert "batch 256, SGD lr" in other and "augment: shift 2px + flip" in other and "8 seeded draws" in other
    assert "label smoothing 0.1, lookahead 0.8, augment" in other
    alternating = run_protocol(compose_config(["data=shapes", "train.augment.flip=alternate"]))
    assert alternating["train"]["augment"]["flip"] == "alternate"
    assert "augment: alternating flip;" in recipe_text(alternating)


def _raise(err):
    def write(handle):
        handle.write(b"half of it")
        raise err
    return write


@pytest.mark.parametrize("err, kind, sentence", [
    (OSError(28, "No space left on device"), "RunError", "the disk is full; free some space"),
    (RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 145280 vs 145168"), "RunError",
     "the disk is full"),  # torch.save's own words for a full disk
    (OSError(30, "Read-only file system"), "UsageError", "(the file system is read-only): choose a folder"),
    (PermissionError(13, "Permission denied"), "UsageError", "(permission denied): choose a folder"),
])
def test_a_full_disk_or_read_only_folder_is_one_sentence_and_keeps_the_old_file(tmp_path, err, kind, sentence):
    from poolbench.results import atomic_write

    path = tmp_path / "summary.csv"
    path.write_text("the previous summary\n")
    with pytest.raises(Exception) as raised:
        atomic_write(path, _raise(err))
    assert type(raised.value).__name__ == kind and f"Cannot write {path}" in str(raised.value)
    assert sentence in str(raised.value)
    assert path.read_text() == "the previous summary\n" and [p.name for p in tmp_path.iterdir()] == ["summary.csv"]


def test_a_run_folder_that_cannot_be_made_is_one_sentence(tmp_path, monkeypatch):
    from pathlib import Path

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(UsageError, match="permission denied"):
        with run_dir_lock(tmp_path / "run"):
            pass


def test_the_cli_turns_a_full_disk_inside_hydra_into_one_sentence(monkeypatch):
    from helpers import cli

    from poolbench import cli as cli_module

    def full_disk(overrides, multirun):
        raise OSError(28, "No space left on device", "outputs/runs/x/.hydra/config.yaml")

    monkeypatch.setattr(cli_module, "_hydra_main", full_disk)
    result = cli("run", "data=shapes")
    assert result.exit_code == 1
    assert "error: Cannot write outputs/runs/x/.hydra/config.yaml: the disk is full" in result.output
