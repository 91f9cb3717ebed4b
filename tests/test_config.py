import pytest

from poolbench.config import check_overrides, compose_config, group_options
from poolbench.errors import UsageError
from poolbench.model import build_model
from poolbench.pools import POOLS


def test_every_pool_config_is_registered_and_every_operator_has_a_config():
    assert set(group_options("pool")) == set(POOLS)


@pytest.mark.parametrize("pool", group_options("pool"))
def test_every_pool_config_composes_and_builds_a_model(pool):
    cfg = compose_config([f"pool={pool}", "data=shapes"])
    model = build_model(cfg)
    assert cfg.pool.name == pool
    assert sum(p.numel() for p in model.parameters()) > 0


def test_dataset_picks_its_training_recipe():
    assert compose_config(["data=cifar10"]).train.augment.flip is True
    assert compose_config(["data=mnist"]).train.augment.flip is False


@pytest.mark.parametrize("overrides, message", [
    (["pool=nope"], "choose one of: attention, avg"),
    (["data=nope"], "choose one of: cifar10, imagefolder, mnist, shapes"),
    (["train.epochs=0"], "train.epochs must be at least 1"),
    (["train.lr=-1"], "train.lr must be positive"),
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
