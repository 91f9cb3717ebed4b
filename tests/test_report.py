"""One run's tables on narrow consoles (a pipe is 80 columns): nothing cut short, no column dropped."""

import io

import pytest
from rich.console import Console

from poolbench.report import pack_columns, results_table, shift_table

METRICS = {  # a metrics.json as a finished run writes it (the parts the tables read)
    "run": {"pool": "fractional", "dataset": "cifar10", "seed": 0},
    "accuracy": {"test": 0.9123},
    "invariance": {"consistency": 0.8765, "flip_rate_1px": 0.0432, "max_shift": 8, "shift_mode": "circular",
                   "draws": 4, "shift_accuracy": {str(d): 0.9123 - d / 100 for d in range(9)}},
    "throughput": {"infer_images_per_s": 1234567.8, "train_images_per_s": 98765.4, "batch_size": 256,
                   "infer_mfu": 0.4321, "train_mfu": 0.1234, "matmul_flops_per_s": 1.39e11, "matmul_dtype": "float32"},
    "model": {"params": 12345678, "flops_per_image": 4.2e9, "flops_uncounted": ["aten::some_long_op_name"]},
    "time": {"train_s": 1234.5, "total_s": 1300.2},
}


def printed(renderable, width: int) -> str:
    out = Console(width=width, record=True, file=io.StringIO())
    out.print(renderable)
    return out.export_text()


@pytest.mark.parametrize("width", [80, 120])
def test_shift_table_shows_every_shift_whole(width):
    text = printed(shift_table(METRICS), width)
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= width
    for d, value in METRICS["invariance"]["shift_accuracy"].items():
        assert f"d={d}" in text and f"{100 * value:.2f}%" in text
    assert text.count("accuracy under circular shifts") == 1  # stacked parts share one title


def test_results_table_fits_80_columns_whole():
    text = printed(results_table(METRICS), 80)
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= 80
    for value in ("91.23%", "87.65%", "4.32%", "1,234,568 img/s", "98,765 img/s", "12,345,678", "4.20G+?"):
        assert value in text


def test_columns_are_packed_by_group_and_none_is_lost():
    widths = {"a": 3, "b": 3, "c": 3, "d": 5, "e": 5, "f": 1}

    def fits(columns, limit):
        return sum(widths[c] for c in columns) <= limit

    groups = [["a", "b", "c"], ["d", "e"], ["f"]]
    assert pack_columns(groups, lambda cols: fits(cols, 20)) == [["a", "b", "c", "d", "e", "f"]]
    assert pack_columns(groups, lambda cols: fits(cols, 11)) == [["a", "b", "c"], ["d", "e", "f"]]
    assert pack_columns(groups, lambda cols: fits(cols, 6)) == [["a", "b"], ["c"], ["d"], ["e", "f"]]
    assert pack_columns(groups, lambda cols: fits(cols, 0)) == [[c] for c in "abcdef"]  # one each, at worst
