import pytest
from omegaconf import OmegaConf

from poolbench.config import check_overrides, compose_config, group_options
from poolbench.errors import UsageError
from poolbench.model import build_model
from poolbench.pools import POOLS, pool_names


def test_every_registered_operator_is_a_pool_choice():
    assert set(POOLS) <= set(group_options("pool"))
    assert set(group_options("pool")) - set(POOLS) <= {"custom"}  # a user's own operator by pool._target_


@pytest.mark.parametrize("pool", pool_names())
def test_every_operator_composes_with_its_signature_defaults_and_builds_a_model(pool):
    cfg = compose_config([f"pool={pool}", "data=shapes"])
    assert OmegaConf.to_container(cfg.pool) == POOLS[pool].config()  # name + the operator's own defaults
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_an_operator_option_can_be_set_but_not_invented():
    assert compose_config(["pool=lp", "pool.p=2"]).pool.p == 2
    with pytest.raises(UsageError, match=r"pool\.q is not an option of pool 'lp' \(its options: pool\.p\)\."):
        check_overrides(["pool=lp", "+pool.q=2"])


def test_dataset_picks_its_training_recipe():
    assert compose_config(["data=cifar10"]).train.augment.flip is True
    assert compose_config(["data=mnist"]).train.augment.flip is False


@pytest.mark.parametrize("overrides, message", [
    (["pool=nope"], "choose one of: aps, attention, avg"),
    (["data=nope"], "choose one of: " + ", ".join(group_options("data")) + r"\."),
    (["train.epochs=0"], "train.epochs must be a whole number of at least 1, got 0"),
    (["train.epochs=1.5"], r"train.epochs must be a whole number of at least 1, got 1\.5"),  # not truncated
    (["seed=abc"], "seed must be a whole number, got 'abc'"),
    (["threads=abc"], "threads must be auto or a whole number of at least 1, got 'abc'"),
    (["threads=0"], "threads must be auto or a whole number of at least 1, got 0"),
    (["threads=-3"], "threads must be auto or a whole number of at least 1, got -3"),
    (["data=imagefolder", "data.max_pixels=0"], "data.max_pixels must be a whole number of at least 1, got 0"),
    (["train.lr=-1"], "train.lr must be a finite number above 0"),
    (["eval.draws=0"], "eval.draws must be auto or a whole number of at least 1"),
    (["eval.throughput.rounds=-1"], "eval.throughput.rounds must be a whole number of at least 0"),
    (["eval.draws=most"], "eval.draws must be auto or a whole number"),
    (["train.batch_size=0"], "train.batch_size"),
    (["eval.max_shift=28"], "eval.max_shift"),
    (["trian.epochs=1"], "Could not override"),
    (["pool"], "Malformed override"),
    (["pool=max,nope"], "Unknown pool 'nope'"),
    (["pool=lp", "pool.p=0.5"], r"pool.p must be a number in \[1, 100\], got 0.5"),
    (["pool=blur", "pool.blur_size=abc"], r"pool.blur_size must be an integer in \[1, 7\], got 'abc'"),
    (["pool=mixed", "pool.per_channel=maybe"], "pool.per_channel must be true or false"),
])
def test_bad_overrides_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        check_overrides(overrides)


def test_sweeps_and_hydra_overrides_are_accepted():
    check_overrides(["pool=max,avg", "seed=0,1", "hydra.run.dir=/tmp/x", "hydra/launcher=basic"])


def test_global_pool_reads_out_with_gap_and_refuses_flatten():
    assert build_model(compose_config(["pool=global", "data=shapes"])).readout == "gap"
    with pytest.raises(UsageError, match="readout=gap"):
        build_model(compose_config(["pool=global", "data=shapes", "model.readout=flatten"]))


def test_model_too_deep_for_the_image_is_a_usage_error():
    with pytest.raises(UsageError, match="too deep"):
        build_model(compose_config(["data=shapes", "model.channels=[4,4,4,4,4,4]"]))


def test_data_configs_keep_their_keys_under_data_and_data_home_holds_the_datasets(monkeypatch, tmp_path):
    monkeypatch.setenv("POOLBENCH_DATA", str(tmp_path))
    cfg = compose_config(["data=cifar10"])
    assert cfg.data_home == str(tmp_path) and cfg.data.root == str(tmp_path)
    assert cfg.data.name == "cifar10" and "name" not in cfg  # `# @package _global_`: nothing leaks to the top
    assert compose_config(["data=imagefolder"]).data.cache == f"{tmp_path}/imagefolder"


def test_dataset_recipes_start_from_the_base_recipe():
    base = compose_config(["data=mnist"]).train
    shapes = compose_config(["data=shapes"]).train
    assert (shapes.epochs, shapes.batch_size) == (3, 64)  # what train/shapes.yaml changes
    assert (shapes.lr, shapes.momentum, shapes.weight_decay) == (base.lr, base.momentum, base.weight_decay)
    assert compose_config(["data=shapes", "train=mnist"]).train.batch_size == base.batch_size  # a choice still wins
