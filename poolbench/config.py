"""Finding, composing and checking configs before any work starts.

The CLI checks every override here first (syntax, names, values), so a user mistake ends
with one sentence and exit code 2 instead of a Hydra traceback halfway through a sweep.
The `pool` group is not a folder of YAML files: each registered operator's config node
(name plus its options' defaults, read from the operator's signature) is put into Hydra's
ConfigStore when this module is imported, so the operator class is the one source of its defaults.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from pathlib import Path

import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from poolbench.errors import UsageError, first_line
from poolbench.parsed_yaml import reuse_parsed_yaml
from poolbench.pools import POOLS, build_pool, pool_names
from poolbench.pools.contract import check_operator
from poolbench.pools.registry import CUSTOM
from poolbench.results import ADDED_SINCE, OPTIMIZABLE, OPTIMIZABLE_EXAMPLES

CONFIG_NAME = "config"
GROUPS = ("pool", "model", "data", "train", "eval", "logger")  # configs/ and the ConfigStore
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
    folder = _literal_value(given[0]) if len(given) == 1 else None
    if folder is None:  # the config's pattern, or a value with interpolations: Hydra's compose resolves it
        cfg = compose_config(given if resolve_with is None else resolve_with, hydra_config=True, check=False)
        folder = str(OmegaConf.select(cfg, key) or "")
    if not folder.strip():
        raise UsageError(f"{key} is empty: name a folder ({key}=outputs/mine), or leave it out for the default.")
    quoted = folder if re.fullmatch(r"[\w./:@-]+", folder) else "'" + folder.replace("'", "\\'") + "'"
    return [o for o in overrides if not names_key(o)] + [f"{key}={quoted}"], Path(folder)


def _literal_value(override: str) -> str | None:
    """The value of `key=value` when it is a plain folder name that composing would not change
    (no interpolation), else None. Saves a compose on every run given its folder."""
    try:
        value = OverridesParser.create().parse_override(override).value()
    except OverrideParseException:
        return None
    return value if isinstance(value, str) and value.strip() and "${" not in value else None


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
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"), reuse_parsed_yaml():
            cfg = compose(CONFIG_NAME, overrides=overrides, return_hydra_config=hydra_config)
    except OverrideParseException as err:
        raise UsageError(_malformed(err)) from None
    except (HydraException, OmegaConfBaseException) as err:
        raise UsageError(_explain(err, overrides, _hydra_group_options)) from None
    except yaml.YAMLError as err:  # a config file of the user's own (hydra.searchpath) that is not YAML
        raise UsageError(_not_yaml(err)) from None
    finally:
        GlobalHydra.instance().clear()
    for group in GROUPS:  # a user's own file (hydra.searchpath) can hold a list where a group wants keys
        if group in cfg and not isinstance(cfg[group], DictConfig):
            raise UsageError(f"The {group} config is not a set of keys (a {group}/<name>.yaml file of your own, "
                             "in a hydra.searchpath folder?): write it as `key: value` lines.")
    if check:
        validate(cfg)
    return cfg


def _hydra_group_options(group: str) -> list[str]:
    """The choices Hydra knows for a group, its plugins' included (hydra/launcher: basic, joblib, ...)."""
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return sorted(GlobalHydra.instance().config_loader().get_group_options(group))
    except Exception:  # a listing for a message: never an error of its own
        return []
    finally:
        GlobalHydra.instance().clear()


def check_overrides(overrides: list[str], multirun: bool = True) -> DictConfig:
    """Check overrides that may hold sweeps (pool=max,avg): every listed value must compose.

    Each swept value is tried once with the others at their first value, so a typo anywhere
    in a grid is found before the first job starts. An Optuna search space (interval(), range(),
    choice(), tag()) is tried at its ends. `multirun=False` (a single run): a swept value is
    refused with the `-m` it needs. A `+key` that adds a key nothing reads is refused too.
    Returns the first job's config.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        raise UsageError(_malformed(err)) from None
    base, choices, plugins = [], [], []
    for override in parsed:
        if override.is_hydra_override():
            if override.get_key_element() == "hydra.searchpath":
                base.append(override.input_line)  # the user's own config folders: needed to compose
            elif override.get_key_element().startswith("hydra/"):
                plugins.append(override.input_line)  # a launcher or sweeper: is its plugin installed?
            continue  # the other hydra.* are Hydra's own; it checks them itself
        if override.is_sweep_override():
            if not multirun:
                raise UsageError(f"{override.input_line} lists several values, which only a sweep runs: add -m "
                                 f"(poolbench run -m {override.input_line}), or quote a value that holds a comma.")
            values = _trial_values(override)
            choices.append((len(base), override.get_key_element(), values))
            base.append(f"{override.get_key_element()}={values[0]}")
        else:
            base.append(override.input_line)
    if plugins:
        compose_config(plugins, hydra_config=True, check=False)
    cfg = compose_config(base)
    _check_added_keys(parsed, base, cfg)
    for position, key, values in choices:
        for value in values[1:]:
            trial = list(base)
            trial[position] = f"{key}={value}"
            compose_config(trial)
    return cfg


def first_job(overrides: list[str]) -> list[str]:
    """The overrides of a sweep's first job: every swept key at its first value, the rest as given."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        raise UsageError(_malformed(err)) from None
    return [f"{o.get_key_element()}={_trial_values(o)[0]}" if o.is_sweep_override() else o.input_line
            for o in parsed]


NAMING_KEY = "hydra.job.config.override_dirname.exclude_keys"
NEVER_IN_JOB_NAMES = ("hydra.run.dir", "hydra.sweep.dir", "hydra/launcher", "hydra/sweeper")


def name_jobs_by_swept_keys(overrides: list[str]) -> list[str]:
    """The overrides plus one that leaves the keys every job shares out of the jobs' folder names
    (configs/config.yaml hydra.sweep.subdir), so a long fixed override never pushes the swept key
    (train.lr=...) past the name's length limit. A user's own exclude_keys is kept as given."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException:
        return overrides  # Hydra reports it
    if any(o.get_key_element() == NAMING_KEY for o in parsed):
        return overrides
    fixed = [o.get_key_element() for o in parsed if not o.is_sweep_override() and not o.is_hydra_override()]
    keys = ",".join("'" + key.replace("'", "\\'") + "'" for key in (*NEVER_IN_JOB_NAMES, *fixed))
    return [*overrides, f"{NAMING_KEY}=[{keys}]"]


def _trial_values(override) -> list[str]:
    """The values of a swept override worth composing: every listed one, or an interval's two ends."""
    sweep = override.value()
    if isinstance(sweep, IntervalSweep):
        return [str(sweep.start), str(sweep.end)]
    return [str(v) for v in override.sweep_string_iterator()]


_ABSENT = object()


def _check_added_keys(parsed, base: list[str], cfg: DictConfig) -> None:
    """Refuse `+key=value` where nothing would read the key: Hydra adds it and the run silently ignores
    it. Operator and backbone options (pool.*, model.*) are left to their factories' signature check
    (validate), config groups (+logger=...) and hydra.* to Hydra."""
    added = [o for o in parsed if (o.is_add() or o.is_force_add()) and not o.is_hydra_override()]
    if not added:
        return
    plain = compose_config([line for line, o in zip(base, _non_hydra(parsed)) if not (o.is_add() or o.is_force_add())],
                           check=False)
    for override in added:
        key = override.get_key_element().lstrip("+")
        if key.split(".")[0] in ("pool", "model") or key in GROUPS:
            continue
        if OmegaConf.select(plain, key, default=_ABSENT) is _ABSENT:
            raise UsageError(f"+{key} adds a key that poolbench never reads{_near_miss(key, plain)}; "
                             "`poolbench run --cfg job` lists every key.")


def _non_hydra(parsed) -> list:
    """The parsed overrides that `check_overrides` put into `base`, in the same order."""
    return [o for o in parsed if not o.is_hydra_override() or o.get_key_element() == "hydra.searchpath"]


def config_keys(cfg: DictConfig) -> list[str]:
    """Every leaf key of `cfg`, dotted (model.channels, train.augment.shift, ...)."""
    def walk(node, prefix: str):
        for key, value in node.items_ex(resolve=False) if isinstance(node, DictConfig) else ():
            path = f"{prefix}{key}"
            if isinstance(value, DictConfig):
                yield from walk(value, path + ".")
            else:
                yield path
    return list(walk(cfg, ""))


def _near_miss(key: str, cfg: DictConfig) -> str:
    """", did you mean train.epochs (set it with train.epochs=...)" when a key is close enough."""
    match = difflib.get_close_matches(key, config_keys(cfg), n=1, cutoff=0.75)
    return f": did you mean {match[0]} (set it with {match[0]}=...)" if match else ""


def validate(cfg: DictConfig, trackers: bool = True) -> None:
    """Value checks that Hydra's composition cannot make. `trackers` (a run about to start): also check
    that every chosen logger's library is installed and that train.resume names a run (not for a
    finished run's config read again: eval, compare --time)."""
    try:
        _check_values(cfg)
    except (TypeError, ValueError, OmegaConfBaseException) as err:
        raise UsageError(f"A config value has the wrong type ({first_line(err)}): "
                         "numbers must be numbers, e.g. train.epochs=3.") from None
    _check_model_builds(cfg)  # an error raised inside an operator or backbone stays its own
    if trackers:
        from poolbench.trackers import check_installed

        check_installed(cfg)  # logger=mlflow without MLflow: one sentence naming the extra, before any run dir
        if cfg.train.get("resume"):
            _run_config_path(Path(str(cfg.train.resume)).expanduser())  # not a run: said before any folder exists


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
    number("train.lookahead", 0, 1, high_open=True)
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
    for key in ("train_size", "test_size", "image_size"):  # generated data's sizes, and every dataset's image size
        if cfg.data.get(key) is not None:
            whole(f"data.{key}", cfg.data[key])
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
    need(cfg.train.augment.flip in (True, False, None, "alternate"),  # null: off, as it always was
         f"train.augment.flip must be true, false or alternate, got {cfg.train.augment.flip!r}.")
    need(isinstance(cfg.eval.get("tta_flip", ADDED_SINCE["eval.tta_flip"]), bool),
         f"eval.tta_flip must be true or false, got {cfg.eval.get('tta_flip')!r}.")
    need(isinstance(cfg.train.amp, bool) or cfg.train.amp == "auto",
         f"train.amp must be auto, true or false, got {cfg.train.amp!r}.")
    metric = cfg.get("optimized_metric")
    need(metric is None or bool(OPTIMIZABLE.fullmatch(str(metric))),
         f"optimized_metric must name a number in metrics.json, e.g. {OPTIMIZABLE_EXAMPLES}; got {metric!r}.")
    need(str(cfg.device) in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got '{cfg.device}'.")
    need(str(cfg.device) != "cuda" or torch.cuda.is_available(),
         "device=cuda but torch sees no CUDA GPU here: use device=auto (or cpu).")
    if cfg.data.get("max_pixels") is not None:  # the datasets that decode image files (configs/data/_images.yaml)
        whole("data.max_pixels", cfg.data.max_pixels)
    if "channels" in cfg.model:
        need(len(cfg.model.channels) >= 1 and all(int(c) >= 1 for c in cfg.model.channels),
             f"model.channels must list at least one positive width, got {list(cfg.model.channels)}.")


def _run_config_path(run_dir: Path) -> Path:
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a poolbench run directory (no .hydra/config.yaml): "
                         "pass the folder a `poolbench run` printed.")
    return path


def load_run_config(run_dir: Path) -> DictConfig:
    """The composed config a run saved in <run_dir>/.hydra/config.yaml."""
    path = _run_config_path(run_dir)
    damaged = f"The run's config {path} is damaged or was edited by hand"
    try:
        cfg = OmegaConf.load(path)
    except Exception:
        raise UsageError(f"{damaged} (not readable YAML): restore it, or rerun the experiment.") from None
    if not isinstance(cfg, DictConfig) or not all(key in cfg for key in ("pool", "model", "data", "train", "eval")):
        raise UsageError(f"{damaged} (it lacks poolbench's sections): restore it, or rerun the experiment.")
    for key, value in ADDED_SINCE.items():
        section, name = key.split(".")
        # every run has train's and eval's keys; a model key belongs to some backbones only, whose own
        # default (the same ADDED_SINCE value) covers it
        if section in ("train", "eval") and name not in cfg[section]:
            cfg[section][name] = value
    try:
        validate(cfg, trackers=False)
    except UsageError as err:  # a value no run could have saved: the file, not the user's line, is wrong
        raise UsageError(f"{damaged} ({str(err).rstrip('.')}): restore it, or rerun the experiment.") from None
    return cfg


# Hydra's plugin groups, and the extra that installs each plugin poolbench documents
PLUGIN_EXTRAS = {("hydra/sweeper", "optuna"): "optuna", ("hydra/launcher", "joblib"): "sweep",
                 ("hydra/launcher", "submitit_local"): "sweep", ("hydra/launcher", "submitit_slurm"): "sweep"}


def _malformed(err: Exception) -> str:
    """One sentence for an override Hydra's grammar cannot read."""
    text = first_line(err)
    if "LexerNoViableAlt" in text:  # Hydra's grammar takes unquoted values in ASCII only
        line = text.split(":", 1)[-1].strip()
        key, _, value = line.partition("=")
        return (f"Cannot read the override {line}: quote a value holding spaces or non-ASCII characters, "
                f"e.g. '{key}=\"{value}\"' (single quotes for the shell, double quotes for Hydra).")
    return f"Malformed override: {text} (write key=value, e.g. pool=avg)."


def _not_yaml(err: yaml.YAMLError) -> str:
    """One sentence for a config file YAML cannot read, naming the file and the place."""
    mark = getattr(err, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "a config file"
    problem = getattr(err, "problem", None) or first_line(err)
    return f"The config file {where} is not valid YAML ({problem}): fix it there."


def _explain(err: Exception, overrides: list[str], options=None) -> str:
    """Turn a Hydra composition error into one sentence naming the valid choices. `options(group)`:
    the choices of a group as Hydra sees them (plugins' groups such as hydra/launcher included)."""
    text = first_line(err)
    missing = re.search(r"Could not (?:find|load) '([\w/]+)/([^'/]*)'", text)
    if missing:
        group, choice = missing.groups()
        extra = PLUGIN_EXTRAS.get((group, choice))
        if extra:
            return f"{group}={choice} needs its Hydra plugin: pip install \"poolbench[{extra}]\"."
        choices = options(group) if options is not None and group.startswith("hydra/") else group_options(group)
        return f"Unknown {group} '{choice}'; choose one of: {', '.join(choices)}."
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        return (f"{key} is not a key of poolbench's config{_near_miss(key, defaults_for(overrides))}; "
                "`poolbench run --cfg job` lists every key.")
    taken = re.search(r"An item is already at '([^']+)'", text)
    if taken:
        return f"{taken.group(1)} is already in the config: set it without the '+' ({taken.group(1)}=...)."
    if "Key '" in text:
        return f"{text} (check the key's spelling; `poolbench run --cfg job` lists every key)."
    return text


def defaults_for(overrides: list[str]) -> DictConfig:
    """The config the overrides' group choices (data=shapes, pool=lip, ...) compose, else the defaults:
    the keys a near miss is matched against and completion offers."""
    groups = [o for o in overrides if o.split("=", 1)[0].lstrip("+") in GROUPS and "," not in o]  # no sweeps
    for attempt in (groups, []):
        try:
            return compose_config(attempt, check=False)
        except UsageError:
            continue
    return OmegaConf.create()
