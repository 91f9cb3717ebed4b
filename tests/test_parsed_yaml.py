import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from poolbench.config import CONFIG_NAME, compose_config, config_dir
from poolbench.parsed_yaml import SOURCES, reuse_parsed_yaml

LINES = [[], ["data=cifar10"], ["data=shapes", "pool=lp", "pool.p=5"], ["model=resnet20", "logger=[csv,tensorboard]"]]


def hydra_alone(overrides, hydra_config):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=hydra_config)
    finally:
        GlobalHydra.instance().clear()


def plain(cfg):
    return OmegaConf.to_container(cfg, resolve=False)


@pytest.mark.parametrize("hydra_config", [False, True])
def test_composing_with_parsed_files_reused_gives_what_hydra_alone_gives(hydra_config):
    for overrides in LINES * 2:  # the second round composes from reused files only
        ours = compose_config(overrides, hydra_config=hydra_config, check=False)
        assert plain(ours) == plain(hydra_alone(overrides, hydra_config)), overrides


def test_a_changed_config_does_not_reach_the_next_compose():
    first = compose_config(["data=shapes"], check=False)
    first.train.epochs = 99
    first.model.channels.append(7)
    again = compose_config(["data=shapes"], check=False)
    assert again.train.epochs != 99 and list(again.model.channels) == [16, 32, 64]


def test_nothing_stays_changed_after_a_compose_even_a_failed_one():
    with pytest.raises(RuntimeError), reuse_parsed_yaml():
        assert all(module.OmegaConf is not OmegaConf for module in SOURCES)
        raise RuntimeError("inside")
    assert all(module.OmegaConf is OmegaConf for module in SOURCES)
