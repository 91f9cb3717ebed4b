"""The `logger` group: history.csv, TensorBoard, MLflow and W&B mirror a run, each read back with the
tracker's own reader; a missing extra is one sentence before any run directory exists; the log file
gets a line per epoch and the results."""

import csv
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import cli, read_metrics

from poolbench.config import compose_config
from poolbench.errors import UsageError
from poolbench.experiment import run_experiment
from poolbench.trackers import Trackers, final_scalars, open_trackers, sweep_group

# A run of well under a second: 200 generated images, two epochs of 3 steps, the cheapest evaluation.
FAST = ["data=shapes", "data.train_size=200", "data.test_size=100", "train.epochs=2", "eval.shift_pairs=1",
        "eval.max_shift=1", "eval.throughput.warmup=0", "eval.throughput.iters=1", "eval.throughput.batch_size=8",
        "model.channels=[4,8]", "threads=1"]
HISTORY_KEYS = ["epoch", "train_loss", "test_accuracy", "lr", "seconds", "epoch_seconds"]


def run(tmp_path: Path, *overrides: str, name: str = "run") -> tuple[Path, dict]:
    """One FAST run in this process (no Hydra: as the Python API runs it); (its folder, its metrics)."""
    run_dir = tmp_path / name
    metrics = run_experiment(compose_config([*FAST, *overrides]), run_dir, list(overrides), show_progress=False)
    return run_dir, metrics


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`poolbench run ... 'logger=[csv,tensorboard]'` through the command line (Hydra writes the log file)."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = cli("run", *FAST, "logger=[csv,tensorboard]", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 0, result.output
    return run_dir, read_metrics(run_dir)


def test_history_csv_has_a_row_per_epoch_with_the_history_keys(cli_run):
    run_dir, metrics = cli_run
    with open(run_dir / "history.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == HISTORY_KEYS == list(metrics["history"][0])  # one vocabulary for both files
    assert [{k: float(v) for k, v in row.items()} for row in rows] == metrics["history"]
    assert [row["epoch"] for row in rows] == ["1", "2"]
    last = metrics["history"][-1]
    assert 0 < last["lr"] < compose_config(FAST).train.lr  # one-cycle: the last step's rate, decaying
    assert sum(h["epoch_seconds"] for h in metrics["history"]) == pytest.approx(last["seconds"], abs=2e-3)


def test_the_log_file_has_a_line_per_epoch_and_the_results(cli_run):
    run_dir, metrics = cli_run
    lines = (run_dir / "poolbench.log").read_text().splitlines()
    epochs = [line for line in lines if "] - epoch " in line]
    assert len(epochs) == 2 and "epoch 1/2: train_loss=" in epochs[0] and " lr=" in epochs[1]
    results = [line for line in lines if "] - results: " in line]
    assert len(results) == 1 and f"accuracy/test={metrics['accuracy']['test']:.6g}" in results[0]


def test_tensorboard_events_read_back(cli_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    run_dir, metrics = cli_run
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    for key in ("train_loss", "test_accuracy", "lr", "epoch_seconds"):
        assert [(s.step, pytest.approx(s.value, rel=1e-6)) for s in events.Scalars(key)] == [
            (h["epoch"], h[key]) for h in metrics["history"]]
    assert events.Scalars("accuracy/test")[0].value == pytest.approx(metrics["accuracy"]["test"], rel=1e-6)
    assert events.Scalars("invariance/consistency")[0].step == 2
    content = events.PluginTagToContent("hparams")
    hparams = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info.hparams
    assert hparams["train.epochs"].number_value == 2 and hparams["model.channels"].string_value == "[4, 8]"
    assert not any(key.startswith("logger.") for key in hparams)  # the trackers' settings are no hyperparameter
    metric_tags = {m.name.tag for m in HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
                   .metric_infos}
    assert {"accuracy/test", "invariance/flip_rate_1px"} <= metric_tags  # the HParams table's columns


@pytest.mark.filterwarnings("ignore:.*noload.*:DeprecationWarning")  # inside MLflow's SQLAlchemy store
@pytest.mark.slow  # MLflow's SQLite store takes about 6 s to set up; the other trackers' read-backs run by default
def test_mlflow_run_reads_back(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"  # an absolute path: four slashes
    run_dir, metrics = run(tmp_path, "logger=[mlflow]", f"logger.mlflow.tracking_uri={uri}")
    assert not (run_dir / "history.csv").exists()  # logger=[...] replaces the default [csv]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("poolbench")  # a run outside a sweep: the configured experiment
    [found] = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == run_dir.name and found.info.status == "FINISHED"
    assert found.data.tags["poolbench.status"] == "complete"
    assert found.data.tags["poolbench.run_dir"] == str(run_dir.resolve())
    assert found.data.params["train.epochs"] == "2" and found.data.params["data.name"] == "shapes"
    assert not any(key.startswith("logger.") for key in found.data.params)
    for key in ("train_loss", "test_accuracy", "lr"):
        history = sorted(client.get_metric_history(found.info.run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(h["epoch"], h[key]) for h in metrics["history"]]
    assert found.data.metrics["accuracy/test"] == metrics["accuracy"]["test"]
    assert found.data.metrics["model/params"] == metrics["model"]["params"]


def wandb_records(run_file: Path):
    """The records of an offline W&B run file, decoded with W&B's own protobuf schema. The framing is
    LevelDB's log format (a 7-byte file header, then 32 KiB blocks of records with a 7-byte header:
    CRC, length, type); wandb 0.31 reads it in its Go core and no longer ships a Python reader."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block = run_file.read_bytes(), 32768
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunk, position = data[position + 7:position + 7 + length], position + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            yield Record.FromString(pending)


@pytest.mark.slow  # W&B starts its service process: about 5 s here
def test_wandb_offline_run_reads_back(tmp_path):
    pytest.importorskip("wandb")
    import json

    run_dir, metrics = run(tmp_path, "logger=[wandb]")
    [run_file] = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(wandb_records(run_file))
    [start] = [r.run for r in records if r.HasField("run")]
    assert start.project == "poolbench" and start.display_name == run_dir.name and not start.run_group
    config = {item.key: json.loads(item.value_json) for item in start.config.update}
    assert config["train"]["epochs"] == 2 and "logger" not in config
    steps = {}
    for record in records:
        if record.HasField("history"):
            row = {item.nested_key[0] if item.nested_key else item.key: json.loads(item.value_json)
                   for item in record.history.item}
            steps[row["_step"]] = row
    assert [(step, steps[step]["train_loss"]) for step in sorted(steps)] == [
        (h["epoch"], h["train_loss"]) for h in metrics["history"]]
    summary = {}
    for record in records:
        if record.HasField("summary"):
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.summary.update})
    assert summary["accuracy/test"] == metrics["accuracy"]["test"] and summary["status"] == "complete"
    assert [r.exit.exit_code for r in records if r.HasField("exit")] == [0]


@pytest.mark.parametrize("name, module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_missing_extra_is_named_before_any_run_directory(tmp_path, monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    run_dir = tmp_path / "run"
    result = cli("run", *FAST, f"logger=[csv,{name}]", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 2, result.output
    assert f'pip install "poolbench[{name}]".' in " ".join(result.output.split())  # printed as text, not markup
    assert not run_dir.exists()
    sentence = rf'logger={name} needs .*: pip install "poolbench\[{name}\]"\.$'
    with pytest.raises(UsageError, match=sentence):
        compose_config([*FAST, f"logger=[csv,{name}]"])
    with pytest.raises(UsageError, match=sentence):  # the Python API's path, had it skipped validate()
        open_trackers(compose_config([*FAST, f"logger=[{name}]"], check=False), tmp_path / "api")


def test_logger_choices_compose():
    assert list(compose_config([]).logger) == ["csv"]  # history.csv in every run by default
    assert list(compose_config(["logger=[csv,tensorboard]"]).logger) == ["csv", "tensorboard"]
    assert "logger" not in compose_config(["logger=[]"])
    assert list(compose_config(["+logger=mlflow"]).logger) == ["csv", "mlflow"]  # added to the default
    with pytest.raises(UsageError, match="Unknown logger 'neptune'"):
        compose_config(["logger=[neptune]"])


def test_a_resumed_run_mirrors_the_whole_history(tmp_path):
    from omegaconf import OmegaConf

    first, _ = run(tmp_path, name="first")
    (first / ".hydra").mkdir()
    OmegaConf.save(compose_config(FAST), first / ".hydra" / "config.yaml")  # what Hydra keeps beside a run
    again, metrics = run(tmp_path, f"train.resume={first}", "logger=[csv]", name="again")  # nothing left to train
    with open(again / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and [{k: float(v) for k, v in row.items()} for row in rows] == metrics["history"]


def test_a_tracker_that_fails_is_switched_off_and_the_run_goes_on(capsys):
    calls = []

    class Broken:
        def log_epoch(self, record):
            raise ConnectionError("server went away")

        def close(self, status):
            calls.append(("broken", status))

    class Fine:
        def log_epoch(self, record):
            calls.append(("epoch", record["epoch"]))

        def log_final(self, scalars, step):
            calls.append(("final", step, scalars))

        def close(self, status):
            calls.append(("fine", status))

    trackers = Trackers({"mlflow": Broken(), "csv": Fine()})
    trackers.log_epoch({"epoch": 1})
    trackers.log_epoch({"epoch": 2})
    trackers.log_final({"accuracy": {"test": 0.5}, "time": {"total_s": 3.0}, "invariance": {"shift_mode": "x"}})
    trackers.close("complete")
    assert calls == [("broken", "failed"), ("epoch", 1), ("epoch", 2),
                     ("final", 2, {"accuracy/test": 0.5, "time/total_s": 3.0}), ("fine", "complete")]
    assert "logger=mlflow failed and was switched off (server went away)" in " ".join(capsys.readouterr().out.split())


def test_final_scalars_are_the_numbers_of_the_result_sections():
    metrics = {"accuracy": {"test": 0.9}, "invariance": {"shift_accuracy": {"0": 0.9, "1": 0.8}, "shift_mode": "c"},
               "throughput": {"infer_mfu": None, "batch_size": 8}, "model": {"params": 10}, "time": {},
               "history": [{"epoch": 1}], "status": "complete"}
    assert final_scalars(metrics) == {"accuracy/test": 0.9, "invariance/shift_accuracy/0": 0.9,
                                      "invariance/shift_accuracy/1": 0.8, "throughput/batch_size": 8,
                                      "model/params": 10}


def test_a_sweep_job_is_grouped_by_its_sweep_directory(tmp_path, monkeypatch):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    job = tmp_path / "sweep" / "0_pool=max"
    hc = SimpleNamespace(mode=RunMode.MULTIRUN, runtime=SimpleNamespace(output_dir=str(job)),
                         sweep=SimpleNamespace(dir="outputs/sweeps/x"))
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: hc))
    assert sweep_group(job) == "outputs/sweeps/x"
    assert sweep_group(tmp_path / "other") is None  # an earlier Hydra run's config, still set in this process
    hc.mode = RunMode.RUN
    assert sweep_group(job) is None


@pytest.mark.slow  # a two-job sweep through the command line, with MLflow and W&B: about 8 s
@pytest.mark.filterwarnings("ignore:.*noload.*:DeprecationWarning")
def test_a_sweep_is_one_mlflow_experiment_and_one_wandb_group(tmp_path, no_plots):
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = tmp_path / "sweep"
    result = cli("run", "-m", *FAST, "pool=max,avg", "eval.throughput.rounds=0", "logger=[csv,mlflow,wandb]",
                 f"logger.mlflow.tracking_uri={uri}", f"hydra.sweep.dir={sweep}")
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(f"poolbench/{sweep}")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
    groups = {next(r.run.run_group for r in wandb_records(f) if r.HasField("run"))
              for f in sweep.glob("*/wandb/offline-run-*/run-*.wandb")}
    assert groups == {str(sweep)} and len(list(sweep.glob("*/history.csv"))) == 2
