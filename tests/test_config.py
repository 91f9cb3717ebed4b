from pathlib import Path

import pytest
from omegaconf import OmegaConf

from poolbench import config
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


def test_sweeps_and_hydra_overrides_are_accepted():
    check_overrides(["pool=max,avg", "seed=0,1", "hydra.run.dir=/tmp/x", "hydra/launcher=basic"])


def test_optuna_search_spaces_are_checked_at_their_values_or_ends():
    check_overrides(["train.lr=interval(0.01,0.2)", "train.momentum=tag(log,interval(0.5,0.95))",
                     "seed=range(0,3)", "pool=choice(max,avg)", "optimized_metric=invariance.consistency"])
    with pytest.raises(UsageError, match="Unknown pool 'avgg'"):
        check_overrides(["pool=choice(max,avgg)"])


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


@pytest.mark.parametrize("text, reason", [
    ("pool: [unclosed\n", "(not readable YAML)"),
    ("just a line of text\n", "(it lacks poolbench's sections)"),
    (None, "(threads must be auto or a whole number of at least 1, got 'many')"),
])
def test_a_damaged_run_config_says_so_not_wrong_type(tmp_path, text, reason):
    from omegaconf import OmegaConf

    from poolbench.config import load_run_config

    (tmp_path / ".hydra").mkdir()
    path = tmp_path / ".hydra" / "config.yaml"
    if text is None:  # a good config, then one value edited to something no run could have saved
        cfg = compose_config(["data=shapes"])
        cfg.threads = "many"
        OmegaConf.save(cfg, path)
    else:
        path.write_text(text)
    with pytest.raises(UsageError) as raised:
        load_run_config(tmp_path)
    assert str(raised.value) == (f"The run's config {path} is damaged or was edited by hand {reason}: "
                                 "restore it, or rerun the experiment.")


def test_a_run_saved_before_a_train_or_eval_key_existed_loads_with_the_value_it_ran_with(tmp_path):
    from omegaconf import OmegaConf, open_dict

    from poolbench.config import load_run_config

    (tmp_path / ".hydra").mkdir()
    cfg = compose_config(["data=shapes"])
    with open_dict(cfg):
        del cfg.train["lookahead"]  # train.lookahead came later: such a run trained without it
        del cfg.eval["draws"]       # and was evaluated with one pass, without test-time flip
        del cfg.eval["tta_flip"]
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    loaded = load_run_config(tmp_path)
    assert (loaded.train.lookahead, loaded.eval.draws, loaded.eval.tta_flip) == (0.0, 1, False)


def test_a_given_folder_is_pinned_as_written_and_a_pattern_is_resolved(monkeypatch):
    pinned, folder = config.pin_output_dir(["pool=avg", "hydra.run.dir='my runs/a,b'"], "hydra.run.dir")
    assert folder == Path("my runs/a,b") and pinned == ["pool=avg", "hydra.run.dir='my runs/a,b'"]
    pinned, folder = config.pin_output_dir(["pool=avg"], "hydra.run.dir", resolve_with=["pool=avg"])
    assert folder.name.endswith("_avg_mnist") and pinned[-1] == f"hydra.run.dir={folder}"  # the config's pattern
    resolved = config.pin_output_dir(["hydra.run.dir=out/${now:%Y}"], "hydra.run.dir")[1]  # an interpolation
    assert resolved.parent == Path("out") and resolved.name.isdigit()

    def no_compose(*args, **kwargs):
        raise AssertionError("a plain folder name needs no compose")

    monkeypatch.setattr(config, "compose_config", no_compose)
    assert config.pin_output_dir(["hydra.run.dir=outputs/x"], "hydra.run.dir")[1] == Path("outputs/x")
