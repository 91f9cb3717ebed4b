"""`poolbench data info|verify|download`: what is where and is it intact, in this process."""

import pytest
from helpers import cli, fake_cifar_batches, make_image_folder, pack

from poolbench.config import group_options
from poolbench.data import commands, mnist
from poolbench.errors import RunError, UsageError
from poolbench.report import si

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
    assert "2: cat, dog" in text and "not decoded yet; a run decodes it into" in text
    images = sum(p.stat().st_size for p in (tmp_path / "set").rglob("*") if p.is_file())
    assert 1024 <= images < 1024**2 and f"size    │ {images / 1024:.1f} kB" in text  # no cache yet


def _tree(root):
    """Every file and folder under root with its size and time: what `data info` must leave alone."""
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _info_text(dataset, overrides):
    from rich.console import Console

    console = Console(width=400, record=True)
    for table in commands.info(dataset, overrides):
        console.print(table)
    return console.export_text()


@pytest.mark.parametrize("dataset", ["imagefolder", "cifar10"])
def test_data_info_on_an_image_folder_archive_decodes_nothing_and_writes_nothing(tmp_path, monkeypatch, dataset):
    import time

    from poolbench.data import cifar10, decode, imagefolder
    from poolbench.data.imagefolder import cache_file

    classes = cifar10.CLASSES if dataset == "cifar10" else ("cat", "dog")
    make_image_folder(tmp_path / "set", classes=classes, per_class=(3, 2), size=4)  # counted, never decoded
    archive = pack(tmp_path / "set", tmp_path / "set.tar.xz")
    overrides, cache_dir, size = {
        "cifar10": ([f"data.root={tmp_path / 'root'}", f"data.source={archive}"], tmp_path / "root" / "cifar10", 32),
        "imagefolder": ([f"data.root={archive}", f"data.cache={tmp_path / 'cache'}", "data.image_size=8",
                         "eval.max_shift=2"], tmp_path / "cache", 8),
    }[dataset]

    def no_decoding(*args, **kwargs):
        raise AssertionError("data info decoded an image")

    monkeypatch.setattr(imagefolder, "decode_images", no_decoding)
    monkeypatch.setattr(decode, "_decode_images", no_decoding)
    before = _tree(tmp_path)
    started = time.perf_counter()
    text = _info_text(dataset, overrides)
    assert time.perf_counter() - started < 5  # composing the config is most of it; a loose bound for busy CPUs
    assert _tree(tmp_path) == before and not cache_dir.exists()  # no cache, no folder, nothing touched
    n = len(classes)
    assert f"{3 * n} train, {2 * n} test, (3, {size}, {size}) uint8" in text and f"{n}: {', '.join(classes)}" in text
    cache = cache_file(archive, cache_dir, size, 3)
    assert f"{archive} (not decoded yet; a run decodes it into {cache})" in text
    assert f"size    │ {si(archive.stat().st_size, '.1f', binary=True, space=' ')}B" in text


def test_data_info_size_counts_an_existing_cache(tmp_path):
    from poolbench.data.imagefolder import load_image_folder

    make_image_folder(tmp_path / "set", per_class=(6, 4))
    archive = pack(tmp_path / "set", tmp_path / "set.zip")
    cache = load_image_folder(archive, tmp_path / "cache", 8, 3).cache  # what a run leaves
    before = _tree(tmp_path)
    text = _info_text("imagefolder", [f"data.root={archive}", f"data.cache={tmp_path / 'cache'}",
                                      "data.image_size=8", "eval.max_shift=2"])
    assert _tree(tmp_path) == before
    total = archive.stat().st_size + cache.stat().st_size
    assert f"size    │ {si(total, '.1f', binary=True, space=' ')}B" in text and f"{archive} (cache {cache})" in text
    assert "12 train, 8 test, (3, 8, 8) uint8" in text


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
