"""One table of bad inputs and faults, each through the command line in this process: the input, the
exit code, the one sentence (whitespace as rich wraps it aside), and what must not be written: a run
command here never leaves its run folder behind ({tmp}/x), and no command prints a traceback.

Rows are cheap (each fails before any data is loaded or any job starts); the tests that need a real
run, a real file or a signal live beside the module they exercise."""

from __future__ import annotations

import pytest
from helpers import cli

from poolbench.config import group_options
from poolbench.pools import pool_names

POOLS = ", ".join(pool_names())
DATA = ", ".join(group_options("data"))
S = ["data=shapes"]  # a dataset that needs no files: nothing below gets that far anyway

# (overrides of `poolbench run`, the sentence, the exit code): every run row gets hydra.run.dir={tmp}/x
RUN_ROWS = [
    # names: groups, keys, operators, backbones
    (["pool=nope"], f"Unknown pool 'nope'; choose one of: {POOLS}, custom.", 2),
    (["pool=Max"], "Unknown pool 'Max'; choose one of:", 2),
    (["data=nope"], f"Unknown data 'nope'; choose one of: {DATA}.", 2),
    (["model=nope"], "Unknown model 'nope'; choose one of: cifar10, custom, resnet18, resnet20, small.", 2),
    (["train=nope"], "Unknown train 'nope'; choose one of: base, cifar10,", 2),
    (["eval=nope"], "Unknown eval 'nope'; choose one of: default.", 2),
    (["logger=nope"], "Unknown logger 'nope'; choose one of:", 2),
    (["hydra/launcher=nope"], "Unknown hydra/launcher 'nope'; choose one of: basic", 2),
    (["hydra/sweeper=nope"], "Unknown hydra/sweeper 'nope'; choose one of: basic", 2),
    (["trian.epochs=1"], "trian.epochs is not a key of poolbench's config: did you mean train.epochs", 2),
    (["train.epoch=3"], "train.epoch is not a key of poolbench's config: did you mean train.epochs", 2),
    (["eval.max_shfit=2"], "did you mean eval.max_shift", 2),
    (["foo=1"], "foo is not a key of poolbench's config; `poolbench run --cfg job` lists every key.", 2),
    (["+foo=1"], "+foo adds a key that poolbench never reads; `poolbench run --cfg job` lists every key.", 2),
    (["+train.epoch=3"], "+train.epoch adds a key that poolbench never reads: did you mean train.epochs", 2),
    (["++train.warmup=0.1"], "+train.warmup adds a key that poolbench never reads", 2),
    (["+data.sourcee=/x"], "+data.sourcee adds a key that poolbench never reads", 2),
    (["+model._target_=mine.Net"], "model._target_ is already in the config: set it without the '+'", 2),
    (["+pool.k=3"], "pool.k is not an option of pool 'max' (its options: none).", 2),
    (["pool=lp", "+pool.q=2"], "pool.q is not an option of pool 'lp' (its options: pool.p).", 2),
    (["pool=custom"], "pool=custom needs pool._target_=module.Class", 2),
    (["pool=custom", "pool._target_=nowhere.Pool"], "pool._target_=nowhere.Pool", 2),
    (["model=custom"], "model=custom has no model._target_: name the backbone's class", 2),
    (["model._target_=nowhere.Net"], "model._target_=nowhere.Net", 2),
    # the shape of the line
    (["pool"], "Malformed override", 2),
    (["pool=max,avg"], "pool=max,avg lists several values, which only a sweep runs: add -m", 2),
    (["seed=0,1"], "seed=0,1 lists several values, which only a sweep runs: add -m (poolbench run -m seed=0,1)", 2),
    (["train.lr=interval(0.01,0.1)"], "lists several values, which only a sweep runs: add -m", 2),
    (["data.root=/tmp/데이터"],
     "quote a value holding spaces or non-ASCII characters, e.g. 'data.root=\"/tmp/데이터\"'", 2),
    # whole numbers
    (["train.epochs=0"], "train.epochs must be a whole number of at least 1, got 0.", 2),
    (["train.epochs=1.5"], "train.epochs must be a whole number of at least 1, got 1.5.", 2),
    (["train.epochs=-2"], "train.epochs must be a whole number of at least 1, got -2.", 2),
    (["train.epochs=abc"], "train.epochs must be a whole number of at least 1, got 'abc'.", 2),
    (["train.epochs=true"], "train.epochs must be a whole number of at least 1, got True.", 2),
    (["train.batch_size=0"], "train.batch_size must be a whole number of at least 1, got 0.", 2),
    (["train.batch_size=2.5"], "train.batch_size must be a whole number of at least 1, got 2.5.", 2),
    (["seed=abc"], "seed must be a whole number, got 'abc'.", 2),
    (["seed=1.5"], "seed must be a whole number, got 1.5.", 2),
    (["threads=abc"], "threads must be auto or a whole number of at least 1, got 'abc'.", 2),
    (["threads=0"], "threads must be auto or a whole number of at least 1, got 0.", 2),
    (["threads=-3"], "threads must be auto or a whole number of at least 1, got -3.", 2),
    (["eval.draws=0"], "eval.draws must be auto or a whole number of at least 1, got 0.", 2),
    (["eval.draws=most"], "eval.draws must be auto or a whole number of at least 1, got 'most'.", 2),
    (["eval.max_shift=-1"], "eval.max_shift must be a whole number of at least 0, got -1.", 2),
    (["eval.max_shift=28"], "eval.max_shift must be in [0, 27] for 28-pixel images, got 28.", 2),
    (["eval.shift_pairs=0"], "eval.shift_pairs must be a whole number of at least 1, got 0.", 2),
    (["eval.batch_size=0"], "eval.batch_size must be a whole number of at least 1, got 0.", 2),
    (["eval.throughput.iters=0"], "eval.throughput.iters must be a whole number of at least 1, got 0.", 2),
    (["eval.throughput.warmup=-1"], "eval.throughput.warmup must be a whole number of at least 0, got -1.", 2),
    (["eval.throughput.batch_size=0"], "eval.throughput.batch_size must be a whole number of at least 1, got 0.", 2),
    (["eval.throughput.rounds=-1"], "eval.throughput.rounds must be a whole number of at least 0, got -1.", 2),
    (["eval.shift_mode=wrap"], "eval.shift_mode must be circular or translate, got 'wrap'.", 2),
    # numbers in ranges
    (["train.lr=0"], "train.lr must be a finite number above 0, got 0.", 2),
    (["train.lr=-1"], "train.lr must be a finite number above 0, got -1.", 2),
    (["train.lr=inf"], "train.lr must be a finite number above 0, got inf.", 2),
    (["train.lr=nan"], "train.lr must be a finite number above 0, got nan.", 2),
    (["train.lr=abc"], "train.lr must be a finite number above 0, got 'abc'.", 2),
    (["~train.lr"], "train.lr is missing: give it a value (train.lr=...), or leave it at its default.", 2),
    (["train.momentum=-1"], "train.momentum must be a finite number in [0, 1), got -1.", 2),
    (["train.momentum=1"], "train.momentum must be a finite number in [0, 1), got 1.", 2),
    (["train.weight_decay=-5"], "train.weight_decay must be a finite number at least 0, got -5.", 2),
    (["train.label_smoothing=2"], "train.label_smoothing must be a finite number in [0, 1), got 2.", 2),
    (["train.lookahead=1"], "train.lookahead must be a finite number in [0, 1), got 1.", 2),
    (["train.augment.flip=maybe"], "train.augment.flip must be true, false or alternate, got 'maybe'.", 2),
    (["train.warmup_fraction=1"], "train.warmup_fraction must be a finite number in [0, 1), got 1.", 2),
    (["train.warmup_fraction=-0.1"], "train.warmup_fraction must be a finite number in [0, 1), got -0.1.", 2),
    (["data.std=[0]"], "data.std[0] must be a finite number above 0, got 0.", 2),
    (["data.std=[-1]"], "data.std[0] must be a finite number above 0, got -1.", 2),
    (["data.mean=[0.1,0.2]"], "data.mean must list one value per channel (1), got [0.1, 0.2].", 2),
    (["data.std=[0.2,0.2,0.2]"], "data.std must list one value per channel (1), got [0.2, 0.2, 0.2].", 2),
    (["data.mean=[inf]"], "data.mean[0] must be a finite number, got inf.", 2),
    (["data.train_size=0"], "data.train_size must be a whole number of at least 1, got 0.", 2),
    (["data.test_size=0"], "data.test_size must be a whole number of at least 1, got 0.", 2),
    (["data.test_size=-5"], "data.test_size must be a whole number of at least 1, got -5.", 2),
    (["data.image_size=0"], "data.image_size must be a whole number of at least 1, got 0.", 2),
    (["data.num_classes=5"], "data.num_classes=5 but shapes has 10 classes (labels 0-9): set data.num_classes=10", 2),
    (["data=mnist", "data.num_classes=9"], "data.num_classes=9 but mnist has 10 classes", 2),
    (["data=cifar100", "data.num_classes=10"], "data.num_classes=10 but cifar100 has 100 classes", 2),
    # choices and machine settings
    (["device=gpu"], "device must be auto, cpu or cuda, got 'gpu'.", 2),
    (["device=tpu"], "device must be auto, cpu or cuda, got 'tpu'.", 2),
    (["optimized_metric=accuracy"], "optimized_metric must name a number in metrics.json, e.g. accuracy.test", 2),
    (["optimized_metric=history"], "optimized_metric must name a number in metrics.json", 2),
    (["hydra.run.dir="], "hydra.run.dir is empty: name a folder (hydra.run.dir=outputs/mine)", 2),
    # operators' options
    (["pool=fractional", "pool.ratio=0"], "pool.ratio", 2),
    (["pool=fractional", "pool.ratio=1"], "pool.ratio", 2),
    (["pool=fractional", "pool.ratio=abc"], "pool.ratio", 2),
    (["pool=lp", "pool.p=0.5"], "pool.p must be a number in [1, 100], got 0.5.", 2),
    (["pool=lp", "pool.p=1000"], "pool.p must be a number in [1, 100], got 1000.", 2),
    (["pool=blur", "pool.blur_size=abc"], "pool.blur_size must be an integer in [1, 7], got 'abc'.", 2),
    (["pool=blur", "pool.blur_size=9"], "pool.blur_size must be an integer in [1, 7], got 9.", 2),
    (["pool=mixed", "pool.per_channel=maybe"], "pool.per_channel must be true or false, got 'maybe'.", 2),
    (["pool=mixed", "pool.alpha=2"], "pool.alpha", 2),
    (["pool=gated", "pool.per_channel=3"], "pool.per_channel must be true or false", 2),
    # backbones
    (["model.channels=[4,4,4,4,4,4]"], "too deep", 2),
    (["model.channels=[]"], "model.channels must list at least one positive width, got [].", 2),
    (["model.channels=[0,8]"], "model.channels must list at least one positive width, got [0, 8].", 2),
    (["model.readout=maybe"], "model.readout must be auto, flatten or gap, got 'maybe'.", 2),
    (["pool=global", "model.readout=flatten"], "readout=gap", 2),
    (["model.padding=reflect"], "model.padding must be zeros or circular, got 'reflect'.", 2),
    (["model=resnet20", "model.padding=reflect"], "model.padding must be zeros or circular, got 'reflect'.", 2),
    (["model.whiten=maybe"], "model.whiten must be true or false, got 'maybe'.", 2),
    (["model.whiten=true", "model.channels=[20,32]"],
     "model.whiten=true needs an even first width of at most 18 for 1-channel images, got model.channels[0]=20", 2),
    (["model=resnet20", "model.blocks=[1,1]"], "model.widths and model.blocks must be equally long lists", 2),
    (["model=resnet18", "model.widths=[64,64,64,64,64,64,64]", "model.blocks=[1,1,1,1,1,1,1]"], "too deep", 2),
    # resuming
    (["train.resume={tmp}/nowhere"], "is not a poolbench run directory (no .hydra/config.yaml)", 2),
]

# (a whole command line, the sentence, the exit code, a path that must not exist afterwards or None)
COMMAND_ROWS = [
    (["sweep", "pool=max,avgg", "seed=0", "hydra.sweep.dir={tmp}/x"], "Unknown pool 'avgg'", 2, "x"),
    (["sweep", "pool=max", "seed=0,1.5", "hydra.sweep.dir={tmp}/x"], "seed must be a whole number, got 1.5.", 2,
     "x"),
    (["sweep", "pool=max", "train.epochs=1,0", "hydra.sweep.dir={tmp}/x"], "train.epochs must be a whole number", 2,
     "x"),
    (["run", "-m", "train.lr=interval(0,0.1)", "hydra.sweep.dir={tmp}/x"], "train.lr must be a finite number", 2,
     "x"),
    (["run", "-m", "pool=choice(max,nope)", "hydra.sweep.dir={tmp}/x"], "Unknown pool 'nope'", 2, "x"),
    (["run", "--cfg", "job", "pool=maxx"], "Unknown pool 'maxx'; choose one of:", 2, None),
    (["run", "--cfg", "job", "pool=max,avg"], "pool=max,avg lists several values", 2, None),
    (["run", "-sc", "install=bash"], "poolbench --install-completion", 2, None),
    (["eval", "{tmp}"], "is not a poolbench run directory (no .hydra/config.yaml)", 2, None),
    (["eval", "{tmp}/nowhere"], "is not a poolbench run directory", 2, None),
    (["compare", "{tmp}"], "holds no poolbench runs", 2, "summary.csv"),
    (["compare", "{tmp}/nowhere"], "is not a directory", 2, None),
    (["demo", "--input", "1,2;3"], "--input rows have different lengths", 2, None),
    (["demo", "--input", "1,x;3,4"], "--input row 1: 'x' is not a number", 2, None),
    (["demo", "--input", "1,inf;3,4"], "is not a finite number", 2, None),
    (["demo", "--input", ";"], "has an empty row", 2, None),
    (["bench", "pool=nope"], "Unknown pool 'nope'", 2, None),
    (["data", "info", "nope"], "nope", 2, None),
]


def _said(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.parametrize("overrides, sentence, code", RUN_ROWS, ids=[" ".join(r[0]) for r in RUN_ROWS])
def test_a_bad_run_line_exits_with_one_sentence_and_writes_nothing(tmp_path, overrides, sentence, code):
    line = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    given = {o.split("=", 1)[0] for o in line}
    result = cli("run", *([] if "data" in given else S), *line,
                 *([] if "hydra.run.dir" in given else [f"hydra.run.dir={tmp_path / 'x'}"]))
    assert result.exit_code == code, result.output
    assert result.output.startswith("error: ") and _said(sentence) in _said(result.output)
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args, sentence, code, unwritten", COMMAND_ROWS, ids=[" ".join(r[0]) for r in COMMAND_ROWS])
def test_a_bad_command_exits_with_one_sentence_and_writes_nothing(tmp_path, monkeypatch, args, sentence, code,
                                                                 unwritten):
    monkeypatch.chdir(tmp_path)
    result = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == code, result.output
    assert _said(sentence) in _said(result.output) and "Traceback" not in result.output
    if unwritten is not None:
        assert not (tmp_path / unwritten).exists()
    assert not (tmp_path / "outputs").exists()


def test_the_table_is_long_enough():
    assert len(RUN_ROWS) + len(COMMAND_ROWS) >= 100
