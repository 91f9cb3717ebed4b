"""The `poolbench` command line: Typer in front, Hydra behind, no experiment logic here.

Overrides are handed to Hydra unchanged, so multirun, launchers, `hydra.run.dir=...` and
`--cfg job` all keep working. Errors end in one sentence and an exit code (2: bad usage,
1: a failed run); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from poolbench.errors import PoolbenchError, RunError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Which downsampling operator should this CNN use? Train, evaluate, compare.")
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

_state = {"debug": False}


def _fail(err: BaseException) -> None:
    """Print one sentence (or the traceback under --debug) and exit with the error's code."""
    if _state["debug"]:
        raise err
    from poolbench.report import console

    code = err.exit_code if isinstance(err, PoolbenchError) else 1
    message = str(err) if isinstance(err, PoolbenchError) else f"{type(err).__name__}: {err}"
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _hydra_main(overrides: list[str], multirun: bool) -> None:
    """Run the Hydra app with these overrides, exactly as `python app.py ...` would."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from poolbench.config import CONFIG_NAME, config_dir
    from poolbench.experiment import run_experiment

    failures: list[BaseException] = []

    def task(cfg):
        hc = HydraConfig.get()
        from poolbench.sweep import earlier_attempt

        done, stopped = earlier_attempt(hc)  # a rerun of a sweep skips finished jobs, continues stopped ones
        if done is not None:
            return done
        if stopped is not None and not cfg.train.get("resume"):
            cfg.train.resume = str(stopped)
        try:
            return run_experiment(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
        except (Exception, KeyboardInterrupt) as err:
            if _state["debug"] or isinstance(err, KeyboardInterrupt):
                raise
            failures.append(err)  # metrics.json already says "failed"; the next job still runs
            return None

    main = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=CONFIG_NAME)(task)
    sweep_dir = None
    if multirun and not any(arg.startswith("-") for arg in overrides):
        from poolbench.sweep import pin_sweep_dir

        overrides, sweep_dir = pin_sweep_dir(overrides)
    argv = sys.argv
    sys.argv = ["poolbench", *(["--multirun"] if multirun else []), *overrides]
    try:
        main()
    except KeyboardInterrupt:
        if sweep_dir is not None:  # Hydra skips on_multirun_end after Ctrl-C: summarize here
            from poolbench.sweep import summarize_interrupted

            summarize_interrupted(sweep_dir, overrides)
        raise
    finally:
        sys.argv = argv
    if failures:
        first = failures[0]
        if len(failures) > 1:
            first = RunError(f"{len(failures)} jobs failed; the first: {first}")
        _fail(first)
    if multirun:  # jobs run by other processes (joblib, submitit) fail there: the sweep table counts them
        from poolbench.sweep import failed_jobs_in_last_multirun

        failed, jobs = failed_jobs_in_last_multirun()
        if failed:
            _fail(RunError(f"{failed} of {jobs} jobs did not complete; the table above lists them with their errors."))


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    _state["debug"] = debug


@app.command(context_settings=PASS_THROUGH)
def run(ctx: typer.Context,
        multirun: bool = typer.Option(False, "-m", "--multirun", help="Hydra multirun over swept values."),
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    """Train and evaluate one configuration. OVERRIDES are Hydra overrides, e.g. pool=avg train.epochs=3."""
    _state["debug"] = _state["debug"] or debug
    overrides = list(ctx.args)
    try:
        from poolbench.config import check_overrides

        if not any(arg.startswith("-") for arg in overrides):  # Hydra flags (--cfg, --info) go straight through
            check_overrides(overrides)
        _hydra_main(overrides, multirun)
    except PoolbenchError as err:
        _fail(err)
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: metrics.json says "interrupted", a checkpoint is kept
        raise typer.Exit(130) from None


@app.command(context_settings=PASS_THROUGH)
def sweep(ctx: typer.Context,
          debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    """Every operator x seeds 0,1,2 (a Hydra multirun), then one comparison table, files and plots.

    OVERRIDES narrow or widen the grid: pool=max,avg seed=0,1,2,3,4 data=shapes.
    """
    _state["debug"] = _state["debug"] or debug
    from poolbench.report import console
    from poolbench.sweep import cli_command, with_default_grid

    overrides = with_default_grid(list(ctx.args))
    try:
        from poolbench.config import check_overrides

        if not any(arg.startswith("-") for arg in overrides):
            check_overrides(overrides)
        console.print(f"[dim]same as: {cli_command(overrides)}[/]", soft_wrap=True)
        _hydra_main(overrides, multirun=True)
    except PoolbenchError as err:
        _fail(err)
    except KeyboardInterrupt:  # as `run`: finished jobs are summarized, stopped ones keep a checkpoint
        raise typer.Exit(130) from None


@app.command()
def compare(dirs: list[Path] = typer.Argument(..., help="Run and sweep directories, in any mix."),
            out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where the summary files and plots go "
                                               "(default: the one DIR given, else outputs/compare/<date>/<time>)."),
            debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    """Aggregate any runs and sweeps into one comparison table, summary files and plots."""
    _state["debug"] = _state["debug"] or debug
    try:
        from poolbench.sweep import compare as compare_dirs

        compare_dirs(dirs, out)
    except (PoolbenchError, Exception) as err:
        _fail(err)


@app.command("eval")
def eval_(run_dir: Path = typer.Argument(..., help="A directory written by `poolbench run`."),
          debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    """Reload a run's checkpoint and config, and measure it again."""
    _state["debug"] = _state["debug"] or debug
    try:
        from poolbench.experiment import evaluate_run

        evaluate_run(run_dir)
    except (PoolbenchError, Exception) as err:
        _fail(err)


@app.command(context_settings=PASS_THROUGH)
def bench(ctx: typer.Context,
          out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also save the rows as JSON here."),
          debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    """Throughput and MFU of every operator, no training. OVERRIDES: pool=max,avg data=cifar10 threads=1 ..."""
    _state["debug"] = _state["debug"] or debug
    try:
        from poolbench.bench import run_bench

        run_bench(list(ctx.args), out)
    except (PoolbenchError, Exception) as err:
        _fail(err)


@app.command("list")
def list_():
    """Operators (what each does, its options, parameters, output size, reference) and datasets."""
    from poolbench.pools.catalog import dataset_table, operator_table
    from poolbench.report import console

    console.print(operator_table())
    console.print(dataset_table())


@app.command()
def demo(matrix: Optional[str] = typer.Option(None, "--input", "-i", help='Your own matrix instead of the '
                                              'article\'s 4x4 example: rows split by ";", values by ",", e.g. "1,2;3,4".'),
         debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    """Every operator applied to the pooling article's 4x4 example (or --input), side by side."""
    _state["debug"] = _state["debug"] or debug
    try:
        from poolbench.demo import show_demo

        show_demo(matrix)
    except PoolbenchError as err:
        _fail(err)


data_app = typer.Typer(no_args_is_help=True, help="Datasets: fetch, check checksums, show what is where.")
app.add_typer(data_app, name="data")
DATASET_ARG = typer.Argument(None, help="mnist, cifar10, shapes or imagefolder (default: mnist and cifar10).")


def _data_command(action, dataset: Optional[str], ctx: typer.Context, debug: bool) -> None:
    _state["debug"] = _state["debug"] or debug
    from poolbench.report import console

    overrides = list(ctx.args)
    if dataset and "=" in dataset:  # `poolbench data info data.root=...`: an override, no dataset named
        dataset, overrides = None, [dataset, *overrides]
    try:
        result = action(dataset, overrides)
    except (PoolbenchError, Exception) as err:
        _fail(err)
    for item in result if isinstance(result, list) else [result]:
        console.print(item, soft_wrap=True)


@data_app.command("download", context_settings=PASS_THROUGH)
def data_download(ctx: typer.Context, dataset: Optional[str] = DATASET_ARG,
                  debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    """Fetch DATASET through its source chain (overrides such as data.root=... or data.source=... apply)."""
    from poolbench.datacmd import download

    _data_command(download, dataset, ctx, debug)


@data_app.command("verify", context_settings=PASS_THROUGH)
def data_verify(ctx: typer.Context, dataset: Optional[str] = DATASET_ARG,
                debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    """Check DATASET's files against their checksums (image folders: decode every image); exit 1 on a failure."""
    from poolbench.datacmd import verify

    _data_command(verify, dataset, ctx, debug)


@data_app.command("info", context_settings=PASS_THROUGH)
def data_info(ctx: typer.Context, dataset: Optional[str] = DATASET_ARG,
              debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    """Path, size, samples, classes and source of DATASET (default: all), fetching nothing."""
    from poolbench.datacmd import info

    _data_command(info, dataset, ctx, debug)


def main(argv: Optional[list[str]] = None) -> None:
    app(args=argv, prog_name="poolbench")


if __name__ == "__main__":
    main()
