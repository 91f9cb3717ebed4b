"""What `poolbench list` shows: every operator with its options, parameters, size rule, reference;
every dataset."""

from helpers import cli

from poolbench.catalog import added_parameters, default_widths
from poolbench.pools import POOLS

NAMES = sorted(POOLS)


def test_added_parameters_count_what_each_operator_learns_in_the_default_model():
    widths = default_widths()
    assert len(widths) >= 2
    assert {name: added_parameters(name) for name in ("max", "blur", "mixed", "gated", "attention")} == {
        "max": 0, "blur": 0, "mixed": len(widths), "gated": 4 * len(widths),
        "attention": sum(w * w + w for w in widths)}


def test_cli_list_shows_every_operator_and_dataset(monkeypatch):
    import poolbench.catalog

    monkeypatch.setattr(poolbench.catalog, "BACKBONES", ("small", "resnet20"))  # resnet18: its own test below
    done = cli("list")
    assert done.exit_code == 0, done.output
    for name in [*NAMES, "mnist", "cifar10", "shapes", "imagefolder", "fashion_mnist", "svhn", "cifar100",
                 "Zhang 2019", "Stergiou et al. 2021", "blur_size=3", "p=3", "model=resnet20", "pool.ratio"]:
        assert name in done.output, name


def test_backbone_rows_count_every_backbone_with_every_operator(monkeypatch):
    import poolbench.catalog
    from poolbench.catalog import backbone_rows

    monkeypatch.setattr(poolbench.catalog, "pool_names", lambda: ["max", "strided"])
    rows = {row["pool"]: row for row in backbone_rows()}
    # the plain ResNet-18 (stride-2 convolutions) is 11.17M parameters, ~1.1 GFLOPs forward at 32x32
    assert 11.1e6 < rows["strided"]["resnet18"]["params"] < 11.25e6
    assert 1.0e9 < rows["strided"]["resnet18"]["flops"] < 1.2e9
    # a stride-1 convolution before the operator costs more than the stride-2 one it replaces
    assert rows["max"]["resnet20"]["flops"] > rows["strided"]["resnet20"]["flops"]
    assert rows["max"]["small"]["uncounted"] == []


def test_the_operator_table_fits_80_columns_without_cutting_a_word():
    from rich.console import Console

    from poolbench.catalog import operator_table

    table = operator_table()
    for width in (80, 120):
        console = Console(width=width)
        with console.capture() as captured:
            console.print(table)
        text = captured.get()
        assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
        words = " ".join(text.replace("│", " ").split())
        for name in NAMES:
            spec = POOLS[name]
            assert name in words and spec.reference.split()[0] in words
            assert all(word in words for word in spec.description.split()), (name, width)
