"""The default grid of `poolbench sweep` and the command it stands for."""

from poolbench.sweep.grid import BASELINE_POOL, DEFAULT_GRID, SWEEP_POOLS, cli_command, with_default_grid


def test_default_grid_is_filled_in_only_for_keys_not_given():
    assert with_default_grid(["data=shapes"]) == [f"pool={DEFAULT_GRID['pool']}", "seed=0,1,2", "data=shapes"]
    assert with_default_grid(["pool=max,avg"]) == ["seed=0,1,2", "pool=max,avg"]
    assert with_default_grid(["seed=0,1,2,3,4", "pool=max"]) == ["seed=0,1,2,3,4", "pool=max"]
    assert with_default_grid(["+pool=max", "~seed"]) == ["+pool=max", "~seed"]  # appended or deleted: given too


def test_the_grid_starts_with_the_baseline_and_lists_the_table_order():
    assert DEFAULT_GRID["pool"].split(",") == list(SWEEP_POOLS) and SWEEP_POOLS[0] == BASELINE_POOL


def test_cli_command_is_the_equivalent_multirun_quoted_for_a_shell():
    assert cli_command(["pool=max,avg", "hydra.sweep.dir=my sweep"]) == \
        "poolbench run -m pool=max,avg 'hydra.sweep.dir=my sweep'"
