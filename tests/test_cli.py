"""The command line in this process (Typer's CliRunner on the root app): exit codes, the one-sentence
errors, --debug, and what a failed or refused run leaves on disk. Real processes: test_end_to_end.py."""

import sys

import pytest
from helpers import SWEEP_TINY, TINY, cli, fake_run_dir, read_metrics

from poolbench import cli as cli_module
from poolbench import demo
from poolbench.errors import UsageError
from poolbench.pools import pool_names


def test_unknown_pool_exits_2_listing_valid_names(tmp_path):
    result = cli("run", "pool=nope", "data=shapes", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 2
    assert "error: Unknown pool 'nope'; choose one of: " + ", ".join(pool_names()) in result.output
    assert not (tmp_path / "x").exists()


def test_bad_value_leaves_no_run_directory(tmp_path):
    result = cli("run", *TINY, "pool=fractional", "pool.ratio=0", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 2 and "pool.ratio" in result.output and "got 0" in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="run folders are locked with flock (Linux, macOS)")
def test_a_run_in_a_folder_another_run_holds_is_refused_and_changes_nothing(tmp_path):
    import fcntl

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("the first run's config\n")
    with open(run_dir / ".lock", "a") as first_run:  # what a running `poolbench run` holds
        fcntl.flock(first_run.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = cli("run", *TINY, f"hydra.run.dir={run_dir}")
    assert result.exit_code == 2
    assert (f"error: Another poolbench run is using {run_dir}: wait for it to finish, or run in another folder"
            in result.output.replace("\n", ""))
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")) == [
        ".hydra", ".hydra/config.yaml", ".lock"]  # no metrics.json, no log, no config of its own
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "the first run's config\n"


def test_a_typo_in_a_swept_value_is_found_before_the_first_job(tmp_path):
    result = cli("sweep", *SWEEP_TINY, "pool=max,avgg", "seed=0", f"hydra.sweep.dir={tmp_path / 's'}")
    assert result.exit_code == 2 and "Unknown pool 'avgg'" in result.output
    assert not (tmp_path / "s").exists()


def test_diverging_run_fails_with_a_clear_error(tmp_path):
    result = cli("run", *SWEEP_TINY, "threads=1", "train.lr=1e12", "train.warmup_fraction=0",
                 f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 1, result.output
    assert "Training diverged" in result.output and "lower train.lr" in result.output
    saved = read_metrics(tmp_path)
    assert saved["status"] == "failed" and "diverged" in saved["error"] and saved["accuracy"] == {}


def test_missing_data_without_network_is_a_usage_error_and_a_failed_run(tmp_path, monkeypatch):
    from urllib.error import URLError

    import torchvision.datasets.utils as tv_utils

    def no_network(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(tv_utils, "download_url", no_network)
    result = cli("run", "data=cifar10", "threads=1", f"data.root={tmp_path / 'empty'}",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2
    output = result.output.replace("\n", "")
    assert "CIFAR-10 not found" in output and "data.source=PATH" in output
    assert read_metrics(tmp_path / "run")["status"] == "failed"


def test_hydra_flags_go_straight_through():
    result = cli("run", "data=shapes", "pool=lp", "pool.p=2", "--cfg", "job")
    assert result.exit_code == 0, result.output
    assert "name: lp" in result.output and "p: 2" in result.output and "name: shapes" in result.output


def test_eval_of_a_folder_that_is_not_a_run_exits_2(tmp_path):
    result = cli("eval", str(tmp_path))
    assert result.exit_code == 2 and "not a poolbench run directory" in result.output


def test_eval_of_a_damaged_checkpoint_is_one_sentence(tmp_path):
    run_dir = fake_run_dir(tmp_path / "run", b"not a checkpoint")
    result = cli("eval", str(run_dir))
    assert result.exit_code == 2
    assert f"Checkpoint {run_dir / 'model.pt'} is damaged" in result.output.replace("\n", "")


# ---------------------------------------------------------------- one error policy for every command

def _raise(error):
    def fail(*args, **kwargs):
        raise error
    return fail


def test_an_unexpected_error_exits_1_naming_its_type_and_the_debug_flag(monkeypatch):
    monkeypatch.setattr(demo, "show_demo", _raise(ValueError("boom")))
    result = cli("demo")
    assert result.exit_code == 1
    assert "error: ValueError: boom (an unexpected error; rerun with --debug for the traceback)" in result.output


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch):
    monkeypatch.setattr(demo, "show_demo", _raise(KeyboardInterrupt()))
    result = cli("demo")
    assert result.exit_code == 130 and "Traceback" not in result.output


@pytest.mark.parametrize("error", [ValueError("boom"), UsageError("bad input")])
def test_debug_shows_the_exception_itself(monkeypatch, error):
    monkeypatch.setattr(demo, "show_demo", _raise(error))
    result = cli("--debug", "demo")
    assert result.exception is error and "error:" not in result.output


def test_debug_after_the_command_is_moved_to_the_front(monkeypatch):
    # A pass-through command (run) would otherwise hand `--debug` to Hydra as one of its flags.
    with pytest.raises(UsageError, match="Unknown pool 'nope'"):
        cli_module.main(["run", "pool=nope", "--debug"])
    monkeypatch.setattr(demo, "show_demo", _raise(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        cli_module.main(["demo", "--debug"])
    with pytest.raises(SystemExit) as exit_info:  # and without it: the one sentence, exit 1
        cli_module.main(["demo"])
    assert exit_info.value.code == 1


def test_commands_take_no_debug_option_of_their_own():
    import typer.main

    command = typer.main.get_command(cli_module.app)
    assert [p.name for p in command.params if p.name != "version" and "completion" not in p.name] == ["debug"]
    for name, sub in command.commands.items():
        assert "debug" not in [p.name for p in sub.params], name


def test_an_empty_run_folder_is_refused_and_nothing_is_written_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("run", *TINY, "hydra.run.dir=")
    assert result.exit_code == 2 and "error: hydra.run.dir is empty" in result.output
    assert list(tmp_path.iterdir()) == []


def test_device_cuda_without_a_gpu_is_refused_before_a_run_directory_exists(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = cli("run", *TINY, "device=cuda", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 2 and "device=cuda but torch sees no CUDA GPU here" in result.output
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- help, version, override mistakes

@pytest.mark.parametrize("command", ["run", "sweep"])
def test_dash_h_and_dash_dash_help_give_the_same_help_with_the_override_primer(command):
    short, long = cli(command, "-h"), cli(command, "--help")
    assert short.exit_code == long.exit_code == 0
    assert short.output == long.output
    text = " ".join(short.output.split())
    for must in ("-m with comma lists sweeps", "+key=value adds a key", "--cfg job", "Config groups: pool: ",
                 "data: cifar10, cifar100", "hydra/sweeper=optuna"):
        assert must in text


def test_version():
    from poolbench import __version__

    result = cli("--version")
    assert result.exit_code == 0 and result.output.strip() == f"poolbench {__version__}"


def test_comma_values_without_dash_m_suggest_it(tmp_path):
    result = cli("run", "pool=max,avg", "data=shapes", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.exit_code == 2
    assert "error: pool=max,avg lists several values, which only a sweep runs: add -m" in result.output
    assert "poolbench run -m pool=max,avg" in result.output and not (tmp_path / "x").exists()


def test_sweep_cfg_job_prints_the_first_jobs_config_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("sweep", "--cfg", "job", "data=shapes", "pool=avg,max")
    assert result.exit_code == 0, result.output
    assert "the first job's config (seed=0 pool=avg)" in result.output
    assert "name: avg" in result.output and "name: shapes" in result.output
    assert not (tmp_path / "outputs").exists()


def test_hydras_shell_completion_flag_points_to_poolbenchs_own():
    result = cli("run", "-sc", "install=bash")
    assert result.exit_code == 2 and "poolbench --install-completion" in result.output
