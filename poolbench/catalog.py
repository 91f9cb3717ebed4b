"""What `poolbench list` shows: every operator (from the registry: options and defaults read from
its signature) and every dataset (from its config file and its source), as rich tables."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf
from rich.table import Table

from poolbench.config import compose_config, config_dir, group_options
from poolbench.data import SOURCES
from poolbench.model import build_model, count_params
from poolbench.pools import POOLS, build_pool, pool_names
from poolbench.report import FittedTables, flops_text, si
from poolbench.speed import count_flops


def default_widths() -> list[int]:
    """The stage widths of the model `poolbench run` builds with no overrides."""
    return [int(w) for w in compose_config([]).model.channels]


def added_parameters(name: str, widths: list[int] | None = None) -> int:
    """Learnable parameters the operator adds to the default model (one operator per stage)."""
    widths = widths or default_widths()
    return sum(p.numel() for width in widths for p in build_pool(POOLS[name].config(), width).parameters()
               if p.requires_grad)


# Columns of the operator table in the groups it keeps together when split to fit a narrow console;
# the text columns wrap at their spaces down to these widths before the table is split.
OPERATOR_COLUMNS = [["what it does", "params", "output size"], ["options", "reference"]]
WRAP_WIDTHS = {"what it does": 24, "options": 14, "reference": 16}


def operator_table() -> FittedTables:
    """Every operator: what it does, options, parameters, size rule, reference; at 80 columns the
    options and references stack under the rest (with the names repeated), nothing is cut."""
    widths = default_widths()
    rows = {name: {"what it does": POOLS[name].description,
                   "options": " ".join(f"{k}={_short(v)}" for k, v in POOLS[name].options().items()) or "-",
                   "params": f"{added_parameters(name, widths):,}", "output size": POOLS[name].size_rule,
                   "reference": POOLS[name].reference} for name in pool_names()}

    def build(columns: list[str], index: int, count: int) -> Table:
        table = Table(title="operators (pool=NAME)" if index == 0 else None,
                      caption=f"params: learnable parameters it adds to the default model (stages "
                              f"{', '.join(map(str, widths))}); options: pool.KEY=VALUE overrides; H: input height "
                              "(width alike)" if index == count - 1 else None)
        table.add_column("name", style="bold cyan", no_wrap=True)
        for column in columns:
            table.add_column(column, style={"options": "green", "reference": "dim"}.get(column),
                             justify="right" if column == "params" else "left",
                             no_wrap=column not in WRAP_WIDTHS, min_width=WRAP_WIDTHS.get(column),
                             overflow="fold")
        for name, row in rows.items():
            table.add_row(name, *(row[c] for c in columns))
        return table

    return FittedTables(build, OPERATOR_COLUMNS)


def option_table() -> Table:
    """Every operator option: the key to set, its default (from the class) and what it does."""
    table = Table(title="operator options (pool=NAME pool.KEY=VALUE)")
    for column in ("pool", "key", "default", "meaning"):
        table.add_column(column, style="bold cyan" if column == "pool" else "green" if column == "key" else None,
                         overflow="fold")  # a narrow console wraps a cell, never cuts it
    for name in pool_names():
        spec = POOLS[name]
        for key, default in spec.options().items():
            table.add_row(name, f"pool.{key}", _short(default), spec.option_help.get(key, ""))
    return table


BACKBONES = ("small", "resnet20", "resnet18")
BACKBONE_INPUT = ["data=cifar10"]  # every backbone measured on one input: 32x32 RGB, 10 classes
META_ABOVE = 2_000_000  # parameters above which FLOPs are counted on the meta device (no weights, no arithmetic)


def backbone_rows() -> list[dict]:
    """Params and forward FLOPs per 32x32x3 image of each backbone with each operator."""
    configs = {b: compose_config([*BACKBONE_INPUT, f"model={b}"], check=False) for b in BACKBONES}
    # meta kernels run in Python: small nets count faster for real. Decided once per backbone, from
    # its network with pool=max (an operator adds few parameters), so a small net is built once per row.
    on_meta = {b: count_params(_build(cfg, "max", meta=True)) >= META_ABOVE for b, cfg in configs.items()}
    rows = []
    for name in pool_names():
        row = {"pool": name}
        for backbone, cfg in configs.items():
            model = _build(cfg, name, meta=on_meta[backbone])
            flops, uncounted = count_flops(model, (3, 32, 32))  # its probe follows the weights' device
            row[backbone] = {"params": count_params(model), "flops": flops, "uncounted": uncounted}
        rows.append(row)
    return rows


def _build(cfg, pool_name: str, meta: bool):
    cfg = cfg.copy()
    cfg.pool = POOLS[pool_name].config()
    if not meta:
        return build_model(cfg)
    with torch.device("meta"):  # shapes only: no weights to initialize, no arithmetic to run
        return build_model(cfg)


def backbone_table() -> Table:
    table = Table(title="backbones (model=NAME) with each operator: params / forward FLOPs per 32x32x3 image",
                  caption="model=small is SmallCNN (16, 32, 64); resnet20: He et al. 2016 (16-64); resnet18: "
                          "CIFAR style (64-512); the operator sits at every downsampling point")
    table.add_column("pool", style="bold cyan", no_wrap=True)
    for backbone in BACKBONES:
        table.add_column(f"model={backbone}", justify="right", no_wrap=True)
    for row in backbone_rows():
        table.add_row(row["pool"], *(f"{si(row[b]['params'])} / {flops_text(row[b]['flops'], row[b]['uncounted'])}"
                                     for b in BACKBONES))
    return table


def dataset_table() -> Table:
    table = Table(title="datasets (data=NAME)")
    for column in ("name", "images", "classes", "source"):
        table.add_column(column, style="bold cyan" if column == "name" else None)
    for name in group_options("data"):
        cfg = OmegaConf.load(config_dir() / "data" / f"{name}.yaml").data
        size = cfg.get("image_size")
        source = SOURCES[name].description if name in SOURCES else "-"
        table.add_row(name, f"{size}x{size}x{cfg.get('channels')}", str(cfg.get("num_classes") or "from the folders"),
                      source)
    return table


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)
