"""Finding, composing and checking configs before any work starts.

The CLI checks every override here first (syntax, names, values), so a user mistake ends
with one sentence and exit code 2 instead of a Hydra traceback halfway through a sweep.
The `pool` group is not a folder of YAML files: each registered operator's config node
(name plus its options' defaults, read from the operator's signature) is put into Hydra's
ConfigStore when this module is imported, so the operator class is the one source of its defaults.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from poolbench.errors import UsageError, first_line
from poolbench.pools import POOLS, build_pool, pool_names
from poolbench.pools.contract import check_operator
from poolbench.pools.registry import CUSTOM

CONFIG_NAME = "config"
JOB_DIR_CHARS = 100  # a sweep job's folder name after its number (file systems allow 255 bytes)


def job_dir_name(override_dirname: str, limit: int = JOB_DIR_CHARS) -> str:
    """A sweep job's folder name from its overrides (configs/config.yaml hydra.sweep.subdir): flat
    and short. Characters other than [A-Za-z0-9._=,-] ("/" included) become "_"; when any was
    replaced or the name is cut to `limit`, 8 hex digits of the overrides' SHA-256 keep it unique.
    The overrides themselves stay in .hydra/overrides.yaml, which reruns match jobs by."""
    safe = re.sub(r"[^A-Za-z0-9._=,-]", "_", override_dirname)
    if safe == override_dirname and len(safe) <= limit:
        return safe
    digest = hashlib.sha256(override_dirname.encode()).hexdigest()[:8]
    return f"{safe[:limit - len(digest) - 1]}-{digest}"


def pin_output_dir(overrides: list[str], key: str, resolve_with: list[str] | None = None
                   ) -> tuple[list[str], Path]:
    """The folder `key` (hydra.run.dir or hydra.sweep.dir) names, resolved now and passed to Hydra
    explicitly: (the overrides with `key=<folder>` in place of any given, the folder).

    The config's `${now:...}` pattern (or the user's own value) would otherwise be resolved inside
    Hydra. Pinned, this process knows the folder before Hydra writes to it: to lock a run's, to
    summarize a sweep's after Ctrl-C (whose jobs a launcher may run in other processes) and to
    say how to continue. `resolve_with`: the overrides the pattern needs (a run's names its pool
    and data), by default only a given `key=...`.
    """
    def names_key(override: str) -> bool:
        return override.lstrip("+").split("=", 1)[0] == key

    given = [o for o in overrides if names_key(o)]
    cfg = compose_config(given if resolve_with is None else resolve_with, hydra_config=True, check=False)
    folder = str(OmegaConf.select(cfg, key) or "")
    if not folder.strip():
        raise UsageError(f"{key} is empty: name a folder ({key}=outputs/mine), or leave it out for the default.")
    quoted = folder if re.fullmatch(r"[\w./:@-]+", folder) else "'" + folder.replace("'", "\\'") + "'"
    return [o for o in overrides if not names_key(o)] + [f"{key}={quoted}"], Path(folder)


def register_configs() -> None:
    """Put every registered operator's `pool` node into Hydra's ConfigStore (idempotent), the
    `custom` nodes that take a user's own class by `_target_` from the command line, and the
    `poolbench.job_dir` resolver that names sweep jobs' folders."""
    OmegaConf.register_new_resolver("poolbench.job_dir", job_dir_name, replace=True)
    store = ConfigStore.instance()
    for spec in POOLS.values():
        store.store(group="pool", name=spec.name, node=spec.config())
    store.store(group="pool", name=CUSTOM, node={"name": CUSTOM, "_target_": None})
    store.store(group="model", name=CUSTOM, node={"name": CUSTOM, "_target_": None})


register_configs()


def config_dir() -> Path:
    """configs/ inside an installed wheel (poolbench/configs), else at the checkout's root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return candidate
    raise UsageError("poolbench's configs/ folder is missing: reinstall poolbench.")


def group_options(group: str) -> list[str]:
    if group == "pool":
        return [*pool_names(), CUSTOM]
    # a leading underscore marks what several choices share (configs/data/_images.yaml), not a choice
    names = [p.stem for p in (config_dir() / group).glob("*.yaml") if not p.stem.startswith("_")]
    return sorted(names + ([CUSTOM] if group == "model" else []))


def compose_config(overrides: list[str], hydra_config: bool = False, check: bool = True) -> DictConfig:
    """Compose the config as Hydra would for `overrides` (no sweep values), checked.

    `hydra_config`: keep the `hydra` node (sweep and run folders); `check`: run `validate`.
    """
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(CONFIG_NAME, overrides=overrides, return_hydra_config=hydra_config)
    except OverrideParseException as err:
        raise UsageError(f"Malformed override: {first_line(err)} (write key=value, e.g. pool=avg).") from None
    except (HydraException, OmegaConfBaseException) as err:
        raise UsageError(_explain(err)) from None
    finally:
        GlobalHydra.instance().clear()
    if check:
        validate(cfg)
    return cfg


def check_overrides(overrides: list[str]) -> None:
    """Check overrides that may hold sweeps (pool=max,avg): every listed value must compose.

    Each swept value is tried once with the others at their first value, so a typo anywhere
    in a grid is found before the first job starts.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        raise UsageError(f"Malformed override: {first_line(err)} (write key=value, e.g. pool=avg).") from None
    base, choices = [], []
    for override in parsed:
        if override.is_hydra_override():
            if override.get_key_element() == "hydra.searchpath":
                base.append(override.input_line)  # the user's own config folders: needed to compose
            continue  # the other hydra.* and hydra/... are Hydra's own; it checks them itself
        if override.is_sweep_override():
            values = [str(v) for v in override.sweep_string_iterator()]
            choices.append((len(base), override.get_key_element(), values))
            base.append(f"{override.get_key_element()}={values[0]}")
        else:
            base.append(override.input_line)
    compose_config(base)
    for position, key, values in choices:
        for value in values[1:]:
            trial = list(base)
            trial[position] = f"{key}={value}"
            compose_config(trial)


def validate(cfg: DictConfig) -> None:
    """Value checks that Hydra's composition cannot make."""
    try:
        _check_values(cfg)
    except (TypeError, ValueError, OmegaConfBaseException) as err:
        raise UsageError(f"A config value has the wrong type ({first_line(err)}): "
                         "numbers must be numbers, e.g. train.epochs=3.") from None
    _check_model_builds(cfg)  # an error raised inside an operator or backbone stays its own


def _check_model_builds(cfg: DictConfig) -> None:
    """Operator options out of range and a model too deep for the images fail here, before any
    run directory exists (the model is tiny; building it costs milliseconds)."""
    from poolbench.model import build_model

    probe = cfg.copy()
    with open_dict(probe):
        probe.data.num_classes = probe.data.get("num_classes") or 2  # imagefolder: known after loading
    if cfg.pool.get("_target_"):  # a user's own operator answers to the contract before it trains
        check_operator(lambda channels: build_pool(cfg.pool, channels), 4, f"pool._target_={cfg.pool._target_}")
    build_model(probe)


def _check_values(cfg: DictConfig) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise UsageError(message)

    def whole(key: str, value, least: int | None = 1, auto: bool = False) -> None:  # 1.5 is not truncated to 1
        ok = isinstance(value, int) and not isinstance(value, bool) and (least is None or value >= least)
        need(ok or (auto and value == "auto"), f"{key} must be {'auto or ' if auto else ''}a whole number"
                                               f"{'' if least is None else f' of at least {least}'}, got {value!r}.")

    need(cfg.pool.name in POOLS or bool(cfg.pool.get("_target_")) or cfg.pool.name == CUSTOM,
         f"Unknown pool '{cfg.pool.name}'; choose one of: {', '.join(pool_names())}, or give pool._target_.")
    whole("seed", cfg.seed, least=None)
    whole("threads", cfg.threads, auto=True)
    whole("train.epochs", cfg.train.epochs)
    whole("train.batch_size", cfg.train.batch_size)
    def number(key: str, low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False,
               label: str | None = None):
        """A finite number in the range; the sentence names the key and the range."""
        value = OmegaConf.select(cfg, key, default=None)
        need(value is not None, f"{key} is missing: give it a value ({key}=...), or leave it at its default.")
        try:
            number_value = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number_value = math.nan
        inside = (number_value > low if low_open else number_value >= low) and (
            number_value < high if high_open else number_value <= high)
        if math.isinf(high):
            wanted = "" if math.isinf(low) else f" {'above' if low_open else 'at least'} {low:g}"
        else:
            wanted = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        need(math.isfinite(number_value) and inside, f"{label or key} must be a finite number{wanted}, got {value!r}.")

    number("train.lr", 0, low_open=True)
    number("train.warmup_fraction", 0, 1, high_open=True)
    number("train.momentum", 0, 1, high_open=True)
    number("train.weight_decay", 0)
    number("train.label_smoothing", 0, 1, high_open=True)
    whole("eval.throughput.batch_size", cfg.eval.throughput.batch_size)
    whole("eval.throughput.warmup", cfg.eval.throughput.warmup, least=0)
    whole("eval.throughput.iters", cfg.eval.throughput.iters)
    for key in ("mean", "std"):
        values = cfg.data.get(key)
        if values is None:  # measured from the training images (data=imagefolder)
            continue
        need(len(values) == int(cfg.data.channels),
             f"data.{key} must list one value per channel ({cfg.data.channels}), got {values!r}.")
        for i in range(len(values)):
            number(f"data.{key}.{i}", 0 if key == "std" else -math.inf, low_open=key == "std", label=f"data.{key}[{i}]")
    whole("eval.max_shift", cfg.eval.max_shift, least=0)
    need(0 <= int(cfg.eval.max_shift) < int(cfg.data.image_size),
         f"eval.max_shift must be in [0, {cfg.data.image_size - 1}] for {cfg.data.image_size}-pixel images, "
         f"got {cfg.eval.max_shift}.")
    need(cfg.eval.shift_mode in ("circular", "translate"),
         f"eval.shift_mode must be circular or translate, got '{cfg.eval.shift_mode}'.")
    whole("eval.shift_pairs", cfg.eval.shift_pairs)
    if cfg.eval.throughput.get("rounds") is not None:  # 0: no quiet timing pass after a sweep
        whole("eval.throughput.rounds", cfg.eval.throughput.rounds, least=0)
    whole("eval.batch_size", cfg.eval.batch_size)
    whole("eval.draws", cfg.eval.draws, auto=True)
    need(str(cfg.device) in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got '{cfg.device}'.")
    need(str(cfg.device) != "cuda" or torch.cuda.is_available(),
         "device=cuda but torch sees no CUDA GPU here: use device=auto (or cpu).")
    if cfg.data.get("max_pixels") is not None:  # the datasets that decode image files (configs/data/_images.yaml)
        whole("data.max_pixels", cfg.data.max_pixels)
    if "channels" in cfg.model:
        need(len(cfg.model.channels) >= 1 and all(int(c) >= 1 for c in cfg.model.channels),
             f"model.channels must list at least one positive width, got {list(cfg.model.channels)}.")


def load_run_config(run_dir: Path) -> DictConfig:
    """The composed config a run saved in <run_dir>/.hydra/config.yaml."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a poolbench run directory (no .hydra/config.yaml): "
                         "pass the folder a `poolbench run` printed.")
    try:
        cfg = OmegaConf.load(path)
    except Exception:
        raise UsageError(f"{path} is damaged: rerun the experiment.") from None
    validate(cfg)
    return cfg


def _explain(err: Exception) -> str:
    """Turn a Hydra composition error into one sentence naming the valid choices."""
    text = first_line(err)
    missing = re.search(r"Could not (?:find|load) '(\w+)/([^']*)'", text)
    if missing:
        group, choice = missing.groups()
        return f"Unknown {group} '{choice}'; choose one of: {', '.join(group_options(group))}."
    if "Could not override" in text or "Key '" in text:
        return f"{text} (check the key's spelling, or add a new key with +key=value)."
    return text
