"""Shell completion of overrides, and the override primer that `run -h` and `sweep -h` end with.

Typer completes the commands and options itself (`poolbench --install-completion`); the overrides
are completed here from the composed config: config groups and their choices (`pool=` -> `pool=max`,
`pool=avg`, ...) and every key (`train.` -> `train.epochs=`, ...), with the group choices already
on the line applied (`data=cifar10 model.` completes CIFAR-10's model keys).
"""

from __future__ import annotations

from poolbench.config import GROUPS, config_keys, defaults_for, group_options

PREFIXES = ("++", "+", "~")  # add, force-add, delete: completed like the key they name


def complete_override(ctx, incomplete: str) -> list[str]:
    """Completions of one override on the command line (Typer calls this with the word typed so far)."""
    prefix = next((p for p in PREFIXES if incomplete.startswith(p)), "")
    word = incomplete[len(prefix):]
    if "=" in word:
        key, typed = word.split("=", 1)
        values = group_options(key) if key in GROUPS else []
        return [f"{prefix}{key}={v}" for v in values if v.startswith(typed)]
    given = (ctx.params.get("overrides") or []) if ctx is not None else []
    keys = [*(f"{g}=" for g in GROUPS), *(f"{k}=" for k in config_keys(defaults_for(given)))]
    return [f"{prefix}{k}" for k in keys if k.startswith(word)]


def _primer() -> str:
    groups = "; ".join(f"{g}: {', '.join(group_options(g))}" for g in GROUPS if g != "logger" or group_options(g))
    return (
        "Overrides (Hydra): key=value sets a key (train.epochs=3); group=choice picks a config "
        "(pool=avg, data=cifar10); +key=value adds a key only a user's operator or backbone reads "
        "(pool=custom pool._target_=mymod.Pool +pool.k=3); ~key removes one; "
        "-m with comma lists sweeps (run -m pool=max,avg seed=0,1); "
        "hydra/sweeper=optuna with interval(0.01,0.2), range(1,5), choice(a,b), tag(log,...) searches "
        "(set optimized_metric=accuracy.test); "
        "--cfg job prints the composed config and runs nothing; --hydra-help shows Hydra's own help.\n\n"
        f"Config groups: {groups}. Every key: `poolbench run --cfg job`, docs/CONFIG.md."
    )


OVERRIDE_PRIMER = _primer()
