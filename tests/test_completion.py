"""Shell completion (poolbench/completion.py): commands, config groups with their choices, and keys,
through Typer's own completion protocol, as a shell calls it."""

from typer.testing import CliRunner

from poolbench.cli import app
from poolbench.completion import complete_override
from poolbench.pools import pool_names


def complete(line: str) -> list[str]:
    """What bash gets back for the last word of `line` (Typer's complete_bash protocol)."""
    words = line.split(" ")
    env = {"_POOLBENCH_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    result = CliRunner().invoke(app, [], prog_name="poolbench", env=env)
    assert result.exit_code == 0, result.output
    return result.output.split()


def test_commands_complete():
    assert complete("poolbench r") == ["run"]
    assert set(complete("poolbench ")) >= {"run", "sweep", "compare", "eval", "bench", "list", "demo", "data"}


def test_a_config_group_completes_to_its_choices():
    assert complete("poolbench run pool=a") == ["pool=aps", "pool=attention", "pool=avg"]
    assert complete("poolbench sweep data=c") == ["data=cifar10", "data=cifar100"]
    assert "pool=" in complete("poolbench run po")
    assert set(complete("poolbench run pool=")) == {f"pool={name}" for name in [*pool_names(), "custom"]}


def test_keys_complete_from_the_config_the_line_composes():
    assert complete("poolbench run train.ep") == ["train.epochs="]
    assert "eval.throughput.iters=" in complete("poolbench run eval.throughput.")
    # the line's group choices apply: ResNet-20's keys differ from the small CNN's
    assert complete("poolbench run model=resnet20 model.b") == ["model.blocks="]
    assert complete("poolbench run model.b") == []


def test_prefixed_overrides_complete_like_their_key():
    assert complete_override(None, "+train.ep") == ["+train.epochs="]
    assert complete_override(None, "~train.res") == ["~train.resume="]
