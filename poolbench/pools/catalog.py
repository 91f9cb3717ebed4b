"""What `poolbench list` shows: every operator (from the registry and its config file) and every
dataset (from its config file), as rich tables."""

from __future__ import annotations

from omegaconf import OmegaConf
from rich.table import Table

from poolbench.pools.registry import POOLS, build_pool, pool_names

DATA_SOURCES = {
    "shapes": "generated in memory; no files, no network",
    "imagefolder": "your own train/ and test/ class folders: data.root=PATH",
}


def _config(group: str, name: str):
    from poolbench.config import config_dir

    path = config_dir() / group / f"{name}.yaml"
    return OmegaConf.load(path) if path.is_file() else OmegaConf.create({"name": name})


def default_widths() -> list[int]:
    """The stage widths of the model `poolbench run` builds with no overrides."""
    from poolbench.config import compose_config

    return [int(w) for w in compose_config([]).model.channels]


def added_parameters(name: str, widths: list[int] | None = None) -> int:
    """Learnable parameters the operator adds to the default model (one operator per stage)."""
    pool_cfg = _config("pool", name)
    widths = widths or default_widths()
    return sum(p.numel() for width in widths for p in build_pool(pool_cfg, width).parameters()
               if p.requires_grad)


def operator_table() -> Table:
    widths = default_widths()
    table = Table(title="operators (pool=NAME)", caption=f"params: learnable parameters it adds to the default model (stages {', '.join(map(str, widths))}); "
                  "options: pool.KEY=VALUE overrides; H: input height (width alike)")
    for column, style in (("name", "bold cyan"), ("what it does", ""), ("options", "green"),
                          ("params", ""), ("output size", ""), ("reference", "dim")):
        table.add_column(column, style=style or None, justify="right" if column == "params" else "left",
                         no_wrap=column in ("name", "params", "output size"),
                         max_width={"options": 17, "reference": 22}.get(column))
    for name in pool_names():
        spec = POOLS[name]
        options = {k: v for k, v in OmegaConf.to_container(_config("pool", name)).items() if k != "name"}
        table.add_row(name, spec.description, " ".join(f"{k}={_short(v)}" for k, v in options.items()) or "-",
                      f"{added_parameters(name, widths):,}", spec.size_rule, spec.reference)
    return table


def dataset_table() -> Table:
    from poolbench.config import group_options

    table = Table(title="datasets (data=NAME)")
    for column in ("name", "images", "classes", "source"):
        table.add_column(column, style="bold cyan" if column == "name" else None)
    for name in group_options("data"):
        cfg = _config("data", name)
        size = cfg.get("image_size")
        source = DATA_SOURCES.get(name, "downloaded when missing, kept in data.root")
        table.add_row(name, f"{size}x{size}x{cfg.get('channels')}", str(cfg.get("num_classes") or "from the folders"),
                      source)
    return table


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)
