"""`poolbench bench`: throughput and MFU of every operator, no data and no training.

Each operator gets the same network (the composed `model`, `data` shape, `train.amp`,
`train.channels_last`, `eval.throughput` settings) on a synthetic batch. The dense matmul rate,
the MFU denominator, is measured as a run measures it (`speed.matmul_rate`: the best of several
warmed-up measurements, in the precision the network runs in, bf16 under autocast) right after
each operator's timings, so a machine whose load changes during the table still compares each
row with its own ceiling.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.table import Table

from poolbench.config import compose_config
from poolbench.environment import environment
from poolbench.errors import UsageError
from poolbench.model import count_params
from poolbench.pools import pool_names
from poolbench.report import UNCOUNTED_MARK, model_label
from poolbench.report import console as default_console
from poolbench.results import write_json
from poolbench.runtime import autocast_for, compute_dtype, model_on, prepare_process, select_device
from poolbench.speed import add_mfu, count_flops, matmul_rate, throughput


def split_pool_override(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(operators to bench, the other overrides); `pool=max,avg` narrows the table."""
    pools, rest = [], []
    for item in overrides:
        if item.startswith("pool="):
            pools += [p.strip() for p in item.split("=", 1)[1].split(",") if p.strip()]
        else:
            rest.append(item)
    known = pool_names()
    unknown = [p for p in pools if p not in known]
    if unknown:
        raise UsageError(f"Unknown pool '{unknown[0]}'; choose one of: {', '.join(known)}.")
    return pools or known, rest


def operator_config(name: str, overrides: list[str]):
    """The composed config for one operator, with its default options."""
    return compose_config([*overrides, f"pool={name}"])


def bench_operator(cfg, device: torch.device) -> dict:
    """Params, FLOPs, images/s and MFU of one operator's network (fresh weights)."""
    torch.manual_seed(int(cfg.seed))
    model = model_on(cfg, device)
    channels_last = bool(cfg.train.channels_last)
    shape = (int(cfg.data.channels), int(cfg.data.image_size), int(cfg.data.image_size))
    flops, uncounted = count_flops(model, shape)
    tp = cfg.eval.throughput
    speed = throughput(model, shape, int(cfg.data.num_classes or 10), device, int(tp.batch_size),
                       int(tp.warmup), int(tp.iters), autocast_for(device, cfg.train.amp), channels_last)
    speed = add_mfu(speed, flops, matmul_rate(device, compute_dtype(device, cfg.train.amp)))
    return {"pool": cfg.pool.name, "params": count_params(model), "flops_per_image": flops,
            "flops_uncounted": uncounted, **speed}


def run_bench(overrides: list[str], out: Path | None = None, console=None) -> list[dict]:
    """Bench every operator (or those named by pool=...), print one table, optionally save JSON."""
    console = console or default_console
    pools, rest = split_pool_override(list(overrides))
    base = compose_config(rest)
    prepare_process(base.threads)
    device = select_device(str(base.device))
    env = environment(device, torch.get_num_threads())  # taken first: its start time is the bench's
    rows = []
    with console.status("") as status:
        for name in pools:
            status.update(f"timing pool={name} ...")
            rows.append(bench_operator(operator_config(name, rest), device))
    console.print(bench_table(rows, base, device))
    if out is not None:
        write_json(out, {"device": device_name(device), "threads": torch.get_num_threads(),
                         "torch": torch.__version__, "overrides": list(overrides),
                         "environment": env, "rows": rows})
        console.print(f"saved: {out}")
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def mfu_denominator(rows: list[dict]) -> str:
    """What every MFU of the table is divided by: "this machine's dense float32 matmul rate,
    131-139 GFLOP/s (mm GFLOP/s: best of 5 rounds ...), measured after each row; not a vendor peak"."""
    if not rows:
        return "this machine's dense matmul rate"
    rates = [row["matmul_flops_per_s"] / 1e9 for row in rows]
    low, high = min(rates), max(rates)
    rate = f"{low:.0f} GFLOP/s" if f"{low:.0f}" == f"{high:.0f}" else f"{low:.0f}-{high:.0f} GFLOP/s"
    return (f"this machine's dense {rows[0]['matmul_dtype']} matmul rate, {rate} (mm GFLOP/s: "
            f"{rows[0]['matmul_method']}), measured after each row; not a vendor peak")


def bench_table(rows: list[dict], cfg, device: torch.device) -> Table:
    tp = cfg.eval.throughput
    amp = "bf16 autocast" if isinstance(autocast_for(device, cfg.train.amp), torch.autocast) else "fp32"
    table = Table(title=f"throughput: data={cfg.data.name} model={model_label(cfg.model)} "
                        f"batch {tp.batch_size}, {amp}, {device_name(device)}",
                  caption=f"MFU = FLOPs x images/s / {mfu_denominator(rows)}; training counts 3x forward "
                          f"FLOPs; {UNCOUNTED_MARK} = some ops could not be counted (-o JSON lists them)")
    table.add_column("pool", no_wrap=True)
    for column in ("params", "MFLOP /img", "infer img/s", "infer MFU", "train img/s", "train MFU",
                   "mm GFLOP /s"):  # headers wrap at their spaces: the table fits 80 columns uncut
        table.add_column(column, justify="right", overflow="fold")
    for row in rows:
        flops = f"{row['flops_per_image'] / 1e6:.2f}" + (UNCOUNTED_MARK if row["flops_uncounted"] else "")
        table.add_row(row["pool"], f"{row['params']:,}", flops,
                      f"{row['infer_images_per_s']:,.0f}", f"{row['infer_mfu']:.1%}",
                      f"{row['train_images_per_s']:,.0f}", f"{row['train_mfu']:.1%}",
                      f"{row['matmul_flops_per_s'] / 1e9:.0f}")
    return table
