"""The operator registry: every operator is registered by name with the facts `poolbench list`
shows, and `build_pool` turns a `pool` config (name plus the operator's options) into a module
for a given channel count. Option checkers live here so every operator words errors alike.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from poolbench.errors import UsageError
from poolbench.targets import import_target

TARGET_KEY = "_target_"
CUSTOM = "custom"  # `pool=custom pool._target_=...`: the config node for a user's operator on the command line


def keyword_parameters(factory, skip: int = 1) -> list[inspect.Parameter]:
    """The factory's options: parameters that can be passed by name, after the `skip` leading ones
    the caller fills itself (an operator's channels; a backbone's in_channels .. make_pool)."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p for p in list(inspect.signature(factory).parameters.values())[skip:] if p.kind in named]


@dataclass(frozen=True)
class PoolSpec:
    name: str
    factory: Callable[..., nn.Module]   # factory(channels, **options): a class or a function
    description: str
    size_rule: str
    reference: str
    local: bool = True                  # False: no local downsampling, the readout's global pool does it all
    option_help: dict[str, str] = field(default_factory=dict)

    def options(self) -> dict:
        """The factory's keyword options and their defaults: the one place a default is written."""
        return {p.name: p.default for p in keyword_parameters(self.factory) if p.default is not p.empty}

    def config(self) -> dict:
        """The `pool` config node Hydra composes for `pool=<name>`."""
        return {"name": self.name, **self.options()}


POOLS: dict[str, PoolSpec] = {}


def register(name: str, *, description: str, size_rule: str, reference: str, local: bool = True,
             options: dict[str, str] | None = None):
    """Register an operator class (or factory) under `name`; `options` explains each keyword option."""
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        POOLS[name] = PoolSpec(name, factory, description, size_rule, reference, local, dict(options or {}))
        return factory

    return add


def pool_names() -> list[str]:
    return sorted(POOLS)


def get_spec(name: str) -> PoolSpec:
    if name not in POOLS:
        raise UsageError(f"Unknown pool '{name}'; choose one of: {', '.join(pool_names())}.")
    return POOLS[name]


def build_pool(pool_cfg, channels: int) -> nn.Module:
    """Build the operator `pool_cfg` names, with the options in `pool_cfg`.

    A registered operator by `name`, or the user's own by `_target_` ("module.Class", called as
    Class(channels, **options)). Options are checked against the factory's signature before the
    call, so a TypeError raised inside the operator stays the operator's own error.
    """
    factory, label = pool_factory(pool_cfg)
    options = {k: v for k, v in dict(pool_cfg).items() if k not in ("name", TARGET_KEY)}
    check_options(factory, options, label, "pool")
    return factory(channels, **options)


def check_options(factory, options: dict, label: str, group: str, skip: int = 1) -> None:
    """Refuse options the factory does not take, and name a required one that is missing.

    `skip`: leading parameters the caller fills itself (see keyword_parameters).
    """
    known = keyword_parameters(factory, skip)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    unknown = sorted(set(options) - {p.name for p in known})
    if unknown and not takes_any:
        listed = ", ".join(f"{group}.{p.name}" for p in known) or "none"
        raise UsageError(f"{group}.{unknown[0]} is not an option of {label} (its options: {listed}).")
    missing = [p.name for p in known if p.default is p.empty and p.name not in options]
    if missing:
        raise UsageError(f"{label} needs {group}.{missing[0]}=VALUE.")


def pool_factory(pool_cfg) -> tuple[Callable[..., nn.Module], str]:
    """(factory, how messages name it) for a pool config: its `_target_`, else its registered name."""
    target = pool_cfg.get(TARGET_KEY)
    if target:
        factory = import_target(str(target), "pool._target_")
        if not callable(factory):
            raise UsageError(f"pool._target_={target} is not a class or function: name one that builds an nn.Module.")
        return factory, f"pool._target_={target}"
    if pool_cfg["name"] == CUSTOM:
        raise UsageError("pool=custom needs pool._target_=module.Class: a class (or function) in your own file, "
                         "called with the channel count and the pool's other keys.")
    return get_spec(pool_cfg["name"]).factory, f"pool '{pool_cfg['name']}'"


def is_local(pool_cfg) -> bool:
    """False for operators that leave all downsampling to the readout (pool=global)."""
    if pool_cfg.get(TARGET_KEY) or pool_cfg["name"] == CUSTOM:
        return True
    return get_spec(pool_cfg["name"]).local


def number_option(key: str, value, *, low: float, high: float = math.inf,
                  low_open: bool = False, high_open: bool = False, integer: bool = False) -> float:
    """`value` as a number in the stated range, else a UsageError that names pool.<key>."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    wanted = f"{'an integer' if integer else 'a number'} in {left}{low:g}, {high:g}{right}"
    try:
        number = float(value)
        is_bool = isinstance(value, bool)
    except (TypeError, ValueError):
        number, is_bool = math.nan, False
    ok = not math.isnan(number) and not is_bool and (not integer or float(number).is_integer())
    ok = ok and (number > low if low_open else number >= low) and (number < high if high_open else number <= high)
    if not ok:
        raise UsageError(f"pool.{key} must be {wanted}, got {value!r}.")
    return int(number) if integer else number


def bool_option(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"pool.{key} must be true or false, got {value!r}.")
    return value
