"""`poolbench demo`: every operator applied to one small matrix, printed side by side.

The default matrix is the pooling article's 4x4 example; max pooling gives [[1,5],[5,1]] and
average pooling [[0.25,3],[3,0.25]] (the article truncated the averages to integers). The matrix
is one channel of a batch of one. Operators run in eval mode: fractional with its fixed eval
regions, stochastic with its probability-weighted mean; learnable operators are shown with
their initial weights (seed 0) and labelled so. `global` shows the readout's global mean, since
its slot itself passes the map through unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from rich.columns import Columns
from rich.table import Table

from poolbench.errors import UsageError
from poolbench.pools import POOLS, build_pool, pool_names

ARTICLE_EXAMPLE = [[0, 0, 1, 5], [0, 1, 5, 1], [1, 5, 1, 0], [5, 1, 0, 0]]
MAX_SIDE = 16  # larger matrices do not fit a terminal side by side
SEED = 0


@dataclass
class DemoResult:
    name: str
    output: list[list[float]]
    size_rule: str
    note: str  # "" for fixed operators; what was shown for learned or random ones


def parse_matrix(text: str) -> list[list[float]]:
    """'1,2;3,4' -> [[1.0, 2.0], [3.0, 4.0]]: rows split by ';', values by ',' (or spaces)."""
    rows = [row.replace(",", " ").split() for row in text.strip().strip(";").split(";")]
    if not text.strip() or any(not row for row in rows):
        raise UsageError(f"--input {text!r} has an empty row: write rows separated by ';' and values by ',', "
                         "e.g. --input \"1,2;3,4\".")
    matrix = []
    for r, row in enumerate(rows, 1):
        values = []
        for value in row:
            try:
                number = float(value)
            except ValueError:
                raise UsageError(f"--input row {r}: '{value}' is not a number; write rows separated by ';' "
                                 "and values by ',', e.g. --input \"1,2;3,4\".") from None
            if not math.isfinite(number):
                raise UsageError(f"--input row {r}: '{value}' is not a finite number; use ordinary numbers.")
            values.append(number)
        matrix.append(values)
    widths = {len(row) for row in matrix}
    if len(widths) > 1:
        raise UsageError(f"--input rows have different lengths ({', '.join(str(len(r)) for r in matrix)}): "
                         "give every row the same number of values.")
    height, width = len(matrix), widths.pop()
    if min(height, width) < 2 or max(height, width) > MAX_SIDE:
        raise UsageError(f"--input is {height}x{width}: give between 2 and {MAX_SIDE} rows and columns, "
                         "since every operator needs at least one 2x2 window.")
    return matrix


def apply_operators(matrix: list[list[float]], names: list[str] | None = None) -> list[DemoResult]:
    """Each operator on `matrix` as one channel of a batch of one, in eval mode."""
    x = torch.tensor(matrix, dtype=torch.float32).view(1, 1, len(matrix), len(matrix[0]))
    results = []
    for name in names or pool_names():
        spec = POOLS[name]
        torch.manual_seed(SEED)
        pool = build_pool(spec.config(), 1).eval()
        with torch.no_grad():
            y = pool(x) if spec.local else torch.nn.functional.adaptive_avg_pool2d(pool(x), 1)
        results.append(DemoResult(name, y[0, 0].tolist(), spec.size_rule, _note(name, pool, spec.local)))
    return results


def _note(name: str, pool: torch.nn.Module, local: bool) -> str:
    if any(p.requires_grad for p in pool.parameters()):
        return "learned: at init"
    if name == "stochastic":
        return "eval: sum p*x; training samples"
    if name == "fractional":
        return "fixed eval regions"
    if not local:
        return "slot: identity"
    return ""


def show_demo(text: str | None = None) -> list[DemoResult]:
    """Print the input and every operator's output as small tables side by side."""
    from poolbench.report import console

    matrix = parse_matrix(text) if text is not None else [list(map(float, row)) for row in ARTICLE_EXAMPLE]
    results = apply_operators(matrix)
    source = "your --input" if text is not None else "the article's example"
    tables = [_matrix_table(f"input: {source}", matrix, f"{len(matrix)}x{len(matrix[0])}", "bold")]
    for result in results:
        shape = f"{len(result.output)}x{len(result.output[0])}"
        rule = result.size_rule if POOLS[result.name].local else "global mean"
        caption = f"{rule} -> {shape}" + (f"\n{result.note}" if result.note else "")
        tables.append(_matrix_table(result.name, result.output, caption, "yellow" if result.note else "cyan"))
    console.print(Columns(tables, padding=(0, 2)))
    console.print("[dim]Each operator in eval mode on one channel of a batch of one; output size from the "
                  f"input height H (width alike); learned operators show their initial weights (seed {SEED}).[/]",
                  soft_wrap=True)
    return results


def _matrix_table(title: str, rows: list[list[float]], caption: str, style: str) -> Table:
    table = Table(title=title, title_style=style, caption=caption, show_header=False, caption_justify="left",
                  min_width=22)
    for _ in rows[0]:
        table.add_column(justify="right")
    for row in rows:
        table.add_row(*(format_value(v) for v in row))
    return table


def format_value(value: float) -> str:
    """Up to three decimals, no trailing zeros: 0.25, 3, 0.625, -1.5."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
