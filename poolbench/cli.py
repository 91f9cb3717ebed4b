"""The `poolbench` command line: Typer in front, Hydra behind, no experiment logic here.

Overrides are handed to Hydra unchanged, so multirun, launchers, `hydra.run.dir=...` and
`--cfg job` all keep working. One error policy covers every command (`handle_errors`):
a user's mistake exits 2, a failed run 1, Ctrl-C 130, each with one sentence; `--debug`,
accepted anywhere on the line, shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import Optional

import typer

from poolbench import __version__, config  # config registers the operators' configs with Hydra (launchers too)
from poolbench.completion import OVERRIDE_PRIMER, complete_override
from poolbench.errors import PoolbenchError, RunError, UsageError, write_failure

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}  # -h and --help: the same help, Typer's
app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, context_settings=HELP_OPTIONS,
                  help="Which downsampling operator should this CNN use? Train, evaluate, compare.")
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, **HELP_OPTIONS}
DEBUG_FLAG = "--debug"
OVERRIDES_ARG = typer.Argument(None, help="Hydra overrides (see below).", show_default=False,
                               autocompletion=complete_override)

_state = {"debug": False}


def handle_errors(command):
    """The error policy of every command: one sentence and an exit code, or the traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: what was kept was printed already
            if _state["debug"]:
                raise
            raise typer.Exit(130) from None
        except PoolbenchError as err:
            _fail(str(err), err.exit_code, err)
        except Exception as err:
            # Hydra's own writes (.hydra/, the log) on a full disk or a read-only folder: one sentence too
            known = write_failure(err, getattr(err, "filename", None) or "a file")
            if known is not None:
                _fail(str(known), known.exit_code, err)
            # not a user's mistake: say so, and where to see the traceback
            _fail(f"{type(err).__name__}: {err} (an unexpected error; rerun with --debug for the traceback)", 1, err)
    return wrapper


def _fail(message: str, code: int, err: BaseException) -> None:
    if _state["debug"]:
        raise err
    from rich.markup import escape

    from poolbench.report import console

    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)  # [extras] are text, not markup
    raise typer.Exit(code)


def _hydra_main(overrides: list[str], multirun: bool) -> None:
    """Run the Hydra app with these overrides, exactly as `python app.py ...` would."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from poolbench.sweep.callback import earlier_attempt, failed_jobs_in_last_multirun, pin_sweep_dir

    failures: list[BaseException] = []

    def task(cfg):
        config.register_configs()  # a launcher's worker process composes the job's config again
        from poolbench.experiment import run_experiment
        from poolbench.results import metric_value

        hc = HydraConfig.get()
        done, stopped = earlier_attempt(hc)  # a rerun of a sweep skips finished jobs, continues stopped ones
        if done is not None:
            return done
        if stopped is not None and not cfg.train.get("resume"):
            cfg.train.resume = str(stopped)
        try:
            metrics = run_experiment(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
            # a search sweeper (hydra/sweeper=optuna) needs one number per job: optimized_metric names it
            return metric_value(metrics, cfg.optimized_metric) if cfg.get("optimized_metric") else metrics
        except (Exception, KeyboardInterrupt) as err:
            if _state["debug"] or isinstance(err, KeyboardInterrupt):
                raise
            failures.append(err)  # metrics.json already says "failed"; the next job still runs
            return None

    main = hydra.main(version_base="1.3", config_path=str(config.config_dir()), config_name=config.CONFIG_NAME)(task)
    flags, _ = _split_flags(overrides)
    if multirun and set(flags) & {"--cfg", "-c", "--info", "-i"}:  # Hydra prints one config, not a sweep's
        overrides, multirun = _first_job(overrides), False
    sweep_dir, lock = None, contextlib.nullcontext()
    if multirun and not _has_flags(overrides):
        overrides, sweep_dir = pin_sweep_dir(overrides)  # each job locks its own folder (run_experiment)
    elif not _has_flags(overrides):  # a single run holds its folder before Hydra writes .hydra/ and the log there
        from poolbench.results import run_dir_lock

        overrides, run_dir = config.pin_output_dir(overrides, "hydra.run.dir", resolve_with=overrides)
        lock = run_dir_lock(run_dir)
    if any(arg.startswith("hydra/sweeper=optuna") for arg in overrides):
        _quiet_optuna()
    argv = sys.argv
    hydra_args = config.name_jobs_by_swept_keys(overrides) if sweep_dir is not None else overrides
    sys.argv = ["poolbench", *(["--multirun"] if multirun else []), *_flags_first(hydra_args)]
    try:
        with lock:
            main()
    except KeyboardInterrupt:
        if sweep_dir is not None:  # Hydra skips on_multirun_end after Ctrl-C: summarize here
            from poolbench.sweep.callback import summarize_interrupted

            summarize_interrupted(sweep_dir, overrides)
        raise
    finally:
        sys.argv = argv
    if failures:
        first = failures[0]
        if len(failures) > 1:
            first = RunError(f"{len(failures)} jobs failed; the first: {first}")
        raise first
    if multirun:  # jobs run by other processes (joblib, submitit) fail there: the sweep table counts them
        failed, jobs = failed_jobs_in_last_multirun()
        if failed:
            raise RunError(f"{failed} of {jobs} jobs did not complete; the table above lists them with their errors.")


def _quiet_optuna() -> None:
    """Optuna logs every trial through its own console handler; the sweeper already says what matters
    (Hydra's lines, the best parameters), so Optuna keeps to warnings. Missing Optuna: one sentence."""
    try:
        import optuna
    except ImportError:
        raise UsageError('hydra/sweeper=optuna needs the Optuna sweeper: pip install "poolbench[optuna]".') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _has_flags(overrides: list[str]) -> bool:
    """Hydra's own flags (--cfg, --info, ...) go straight through, unchecked."""
    return any(arg.startswith("-") for arg in overrides)


# Hydra's flags that take a value (--info's is optional: one of INFO_TOPICS)
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
               "-cd", "--experimental-rerun"}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def _flags_first(args: list[str]) -> list[str]:
    """Hydra's flags (with their values) before the overrides: its parser takes the overrides as one
    positional list, so `--cfg job pool=max` after `seed=0,1` (as `sweep` builds it) would be refused."""
    flags, overrides = _split_flags(args)
    # a bare --info goes last, or Hydra would read the first override as its topic
    bare_info = [f for i, f in enumerate(flags) if f in ("--info", "-i")
                 and not (i + 1 < len(flags) and flags[i + 1] in INFO_TOPICS)]
    return [f for f in flags if f not in bare_info] + overrides + bare_info


def _split_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides)."""
    flags, overrides, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            flags.append(arg)
            takes_value = arg in VALUE_FLAGS or (arg in ("--info", "-i") and i + 1 < len(args)
                                                   and args[i + 1] in INFO_TOPICS)
            if takes_value and i + 1 < len(args):
                flags.append(args[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


def _first_job(args: list[str]) -> list[str]:
    """A sweep's flags and its first job's overrides (every swept key at its first value), said on the console."""
    from rich.markup import escape

    from poolbench.report import console

    flags, overrides = _split_flags(args)
    first = config.first_job(overrides)
    swept = [new for new, old in zip(first, overrides) if new != old]
    if swept:
        console.print(f"[dim]the first job's config ({escape(' '.join(swept))}); the others differ only there[/]",
                      soft_wrap=True)
    return flags + first


def _refuse_hydra_completion(overrides: list[str]) -> None:
    if any(arg in ("-sc", "--shell-completion") for arg in overrides):
        raise UsageError("Shell completion comes from poolbench itself: run `poolbench --install-completion` "
                         "(or `poolbench --show-completion` to see the script).")


# Flags after which the overrides compose against another config than poolbench's: left to Hydra
OTHER_CONFIG_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}


def _check(overrides: list[str], multirun: bool) -> None:
    """The overrides checked before Hydra starts, Hydra's flags (--cfg job, --info) set aside: a typo
    gets one sentence and exit 2 whether or not the line also asks Hydra to print the config."""
    flags, rest = _split_flags(overrides)
    if not set(flags) & OTHER_CONFIG_FLAGS:
        from poolbench.data import check_declared_classes

        check_declared_classes(config.check_overrides(rest, multirun=multirun).data)


def _run_overrides(overrides: list[str], multirun: bool) -> None:
    _refuse_hydra_completion(overrides)
    _check(overrides, multirun)
    _hydra_main(overrides, multirun)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"poolbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, DEBUG_FLAG, help="Show tracebacks instead of one-line errors "
                                     "(accepted after any command too)."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print poolbench's version and exit.")):
    _state["debug"] = debug


@app.command(context_settings=PASS_THROUGH, epilog=OVERRIDE_PRIMER)
@handle_errors
def run(ctx: typer.Context, overrides: Optional[list[str]] = OVERRIDES_ARG,
        multirun: bool = typer.Option(False, "-m", "--multirun", help="Hydra multirun over swept values.")):
    """Train and evaluate one configuration. OVERRIDES are Hydra overrides, e.g. pool=avg train.epochs=3."""
    _run_overrides([*(overrides or []), *ctx.args], multirun)


@app.command(context_settings=PASS_THROUGH, epilog=OVERRIDE_PRIMER)
@handle_errors
def sweep(ctx: typer.Context, overrides: Optional[list[str]] = OVERRIDES_ARG):
    """Every operator x seeds 0,1,2 (a Hydra multirun), then one comparison table, files and plots.

    OVERRIDES narrow or widen the grid: pool=max,avg seed=0,1,2,3,4 data=shapes.
    """
    from rich.markup import escape

    from poolbench.report import console
    from poolbench.sweep.grid import cli_command, with_default_grid

    overrides = with_default_grid([*(overrides or []), *ctx.args])
    _refuse_hydra_completion(overrides)
    _check(overrides, multirun=True)
    console.print(f"[dim]same as: {escape(cli_command(overrides))}[/]", soft_wrap=True)
    _hydra_main(overrides, multirun=True)


@app.command()
@handle_errors
def compare(dirs: list[Path] = typer.Argument(..., help="Run and sweep directories, in any mix."),
            out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where the summary files and plots go "
                                               "(default: the one DIR given, else outputs/compare/<date>/<time>)."),
            time: bool = typer.Option(False, "--time", help="First time every configuration alone (the quiet timing "
                                      "pass, timing.json in the output folder): the speed columns then rank.")):
    """Aggregate any runs and sweeps into one comparison table, summary files and plots."""
    from poolbench.sweep.compare import compare as compare_dirs
    from poolbench.sweep.compare import output_dir

    out = output_dir(dirs, out)
    if time:
        from poolbench.timing import time_configurations

        time_configurations(list(dirs), out)
    compare_dirs(dirs, out)


@app.command("eval")
@handle_errors
def eval_(run_dir: Path = typer.Argument(..., help="A directory written by `poolbench run`.")):
    """Reload a run's checkpoint and config, and measure it again."""
    from poolbench.experiment import evaluate_run

    evaluate_run(run_dir)


@app.command(context_settings=PASS_THROUGH)
@handle_errors
def bench(ctx: typer.Context,
          out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also save the rows as JSON here.")):
    """Throughput and MFU of every operator, no training. OVERRIDES: pool=max,avg data=cifar10 threads=1 ..."""
    from poolbench.bench import run_bench

    run_bench(list(ctx.args), out)


@app.command("list")
@handle_errors
def list_():
    """Operators (what each does, options, parameters, output size, reference), backbones, datasets."""
    from poolbench.catalog import backbone_table, dataset_table, operator_table, option_table
    from poolbench.report import console

    console.print(operator_table())
    console.print(option_table())
    console.print(backbone_table())
    console.print(dataset_table())


@app.command()
@handle_errors
def demo(matrix: Optional[str] = typer.Option(None, "--input", "-i", help="Your own matrix instead of the "
                                              "article's 4x4 example: rows split by ';', values by ',', "
                                              "e.g. '1,2;3,4'.")):
    """Every operator applied to the pooling article's 4x4 example (or --input), side by side."""
    from poolbench.demo import show_demo

    show_demo(matrix)


data_app = typer.Typer(no_args_is_help=True, help="Datasets: fetch, check checksums, show what is where.")
app.add_typer(data_app, name="data")
DATASET_ARG = typer.Argument(None, help="mnist, cifar10, fashion_mnist, kmnist, svhn, cifar100, shapes or imagefolder "
                                         "(default: mnist and cifar10).")


def _data_command(action_name: str, dataset: Optional[str], ctx: typer.Context) -> None:
    from poolbench.data import commands
    from poolbench.report import console

    overrides = list(ctx.args)
    if dataset and "=" in dataset:  # `poolbench data info data.root=...`: an override, no dataset named
        dataset, overrides = None, [dataset, *overrides]
    result = getattr(commands, action_name)(dataset, overrides)
    for item in result if isinstance(result, list) else [result]:
        console.print(item, soft_wrap=True)


@data_app.command("download", context_settings=PASS_THROUGH)
@handle_errors
def data_download(ctx: typer.Context, dataset: Optional[str] = DATASET_ARG):
    """Fetch DATASET through its source chain (overrides such as data.root=... or data.source=... apply)."""
    _data_command("download", dataset, ctx)


@data_app.command("verify", context_settings=PASS_THROUGH)
@handle_errors
def data_verify(ctx: typer.Context, dataset: Optional[str] = DATASET_ARG):
    """Check DATASET's files against their checksums (image folders: decode every image); exit 1 on a failure."""
    _data_command("verify", dataset, ctx)


@data_app.command("info", context_settings=PASS_THROUGH)
@handle_errors
def data_info(ctx: typer.Context, dataset: Optional[str] = DATASET_ARG):
    """Path, size, samples, classes and source of DATASET (default: all), fetching nothing."""
    _data_command("info", dataset, ctx)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point. `--debug` is a root option; given after a command (`poolbench run --debug ...`)
    it is moved to the front, so every command accepts it the same way."""
    args = list(sys.argv[1:] if argv is None else argv)
    if DEBUG_FLAG in args:
        args = [DEBUG_FLAG, *(a for a in args if a != DEBUG_FLAG)]
    app(args=args, prog_name="poolbench")


if __name__ == "__main__":
    main()
