"""What `poolbench sweep` runs by default, and the order its tables list operators in.

`poolbench sweep X` = `poolbench run -m pool=<SWEEP_POOLS> seed=<SWEEP_SEEDS> X`, with `pool`
and `seed` left out where X sets them. The grid lives here, not in the config, so
`poolbench run -m` sweeps exactly what it is given.
"""

from __future__ import annotations

import shlex

BASELINE_POOL = "max"
# The six original operators: the default grid, and the order of every table's rows (others follow).
SWEEP_POOLS = ("max", "avg", "strided", "global", "fractional", "attention")
SWEEP_SEEDS = (0, 1, 2)
DEFAULT_GRID = {"pool": ",".join(SWEEP_POOLS), "seed": ",".join(map(str, SWEEP_SEEDS))}


def with_default_grid(overrides: list[str]) -> list[str]:
    """The default grid first, minus every key the user's overrides set themselves."""
    named = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o or o.startswith("~")}
    return [f"{key}={values}" for key, values in DEFAULT_GRID.items() if key not in named] + list(overrides)


def cli_command(overrides: list[str]) -> str:
    """The equivalent `poolbench run -m` command line, shown when a sweep starts."""
    return "poolbench run -m " + shlex.join(overrides)
