"""`poolbench data info|verify|download`: what is where and is it intact, in this process."""

import pytest
from helpers import cli, fake_cifar_batches, make_image_folder

from poolbench.config import group_options
from poolbench.data import commands, mnist
from poolbench.errors import RunError, UsageError

DATASETS = ", ".join(group_options("data"))  # every configs/data/*.yaml
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


def test_data_info_shows_path_size_samples_classes_and_source(tmp_path):
    from rich.console import Console

    make_image_folder(tmp_path / "set")
    overrides = [f"data.root={tmp_path / 'set'}", f"data.cache={tmp_path / 'c'}", "data.image_size=8",
                 "eval.max_shift=2"]
    console = Console(width=300, record=True)
    for table in commands.info("imagefolder", overrides):
        console.print(table)
    text = console.export_text()
    assert str(tmp_path / "set") in text and "6 train, 4 test, (3, 8, 8) uint8" in text
    assert "2: cat, dog" in text and "decoded in" in text
    images = sum(p.stat().st_size for p in (tmp_path / "set").rglob("*") if p.is_file())
    assert 1024 <= images < 1024**2 and f"size    │ {images / 1024:.1f} kB" in text  # measured before the cache


def test_data_verify_finds_a_bad_md5_and_an_unreadable_image(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in mnist.MD5:
        (raw / name).write_bytes(b"wrong")
    with pytest.raises(RunError, match="4 check\\(s\\) failed"):
        commands.verify("mnist", [f"data.root={tmp_path}"])
    make_image_folder(tmp_path / "set")
    overrides = [f"data.root={tmp_path / 'set'}", f"data.cache={tmp_path / 'c'}", "data.image_size=8",
                 "eval.max_shift=2"]
    assert commands.verify("imagefolder", overrides).row_count == 1
    (tmp_path / "set" / "test" / "cat" / "000.png").write_bytes(b"junk")  # cache still holds the old image
    with pytest.raises(RunError, match="1 check\\(s\\) failed"):
        commands.verify("imagefolder", overrides)


def test_data_download_runs_the_source_chain(tmp_path, monkeypatch, capsys):
    fake_cifar_batches(tmp_path / "root" / "cifar-10-batches-py", monkeypatch)
    commands.download("cifar10", [f"data.root={tmp_path / 'root'}"])
    assert capsys.readouterr().out.startswith("cifar10: 20 train + 4 test images from ")


def test_data_verify_of_a_batches_source_checks_md5s(tmp_path, monkeypatch):
    fake_cifar_batches(tmp_path / "copy" / "cifar-10-batches-py", monkeypatch)
    table = commands.verify("cifar10", [f"data.root={tmp_path / 'root'}", f"data.source={tmp_path / 'copy'}"])
    assert table.row_count == 7


def test_data_commands_name_unknown_datasets():
    with pytest.raises(UsageError, match=f"choose one of: {DATASETS}\\."):
        commands.info("nope", [])


def test_cli_data_verify_of_missing_files_exits_1_naming_the_fix(tmp_path):
    missing = cli("data", "verify", "cifar10", f"data.root={tmp_path}")
    assert missing.exit_code == 1 and "missing" in missing.output
    assert "poolbench data download cifar10" in missing.output.replace("\n", " ")


def test_cli_data_info_takes_an_override_in_place_of_a_dataset(tmp_path):
    make_image_folder(tmp_path / "set")
    result = cli("data", "info", f"data.root={tmp_path / 'empty'}")  # every dataset, data.root overridden
    assert result.exit_code == 0, result.output
    for name in ("data=mnist", "data=cifar10", "data=shapes"):
        assert name in result.output
    assert str(tmp_path / "empty" / "MNIST" / "raw") in result.output and "not available" in result.output


def test_cli_data_download_of_generated_data_fetches_nothing():
    result = cli("data", "download", "shapes")
    assert result.exit_code == 0 and "shapes: generated on the fly, nothing to download" in result.output


def test_cli_data_unknown_dataset_exits_2():
    result = cli("data", "info", "nope")
    assert result.exit_code == 2 and f"choose one of: {DATASETS}." in result.output
