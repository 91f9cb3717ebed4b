"""The operator registry: every operator is registered by name with the facts `poolbench list`
shows, and `build_pool` turns a `pool` config (name plus the operator's options) into a module
for a given channel count. Option checkers live here so every operator words errors alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import nn

from poolbench.errors import UsageError


@dataclass(frozen=True)
class PoolSpec:
    name: str
    factory: Callable[..., nn.Module]
    description: str
    size_rule: str
    reference: str
    local: bool = True  # False: no local downsampling, the readout's global pool does it all


POOLS: dict[str, PoolSpec] = {}


def register(name: str, *, description: str, size_rule: str, reference: str, local: bool = True):
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        POOLS[name] = PoolSpec(name, factory, description, size_rule, reference, local)
        return factory

    return add


def pool_names() -> list[str]:
    return sorted(POOLS)


def get_spec(name: str) -> PoolSpec:
    if name not in POOLS:
        raise UsageError(f"Unknown pool '{name}'; choose one of: {', '.join(pool_names())}.")
    return POOLS[name]


def build_pool(pool_cfg, channels: int) -> nn.Module:
    """Build the operator named by `pool_cfg.name` with the options in `pool_cfg`."""
    options = {k: v for k, v in dict(pool_cfg).items() if k != "name"}
    spec = get_spec(pool_cfg["name"])
    try:
        return spec.factory(channels, **options)
    except TypeError as err:
        raise UsageError(f"Bad option for pool '{spec.name}': {err}.") from None


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
