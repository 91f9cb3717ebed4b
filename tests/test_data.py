import pytest
import torch
from omegaconf import OmegaConf

from poolbench.data import MNIST_MD5, load_dataset, mnist_files_ok
from poolbench.errors import UsageError
from poolbench.shapes import SHAPE_CLASSES, generate_shapes


def test_shapes_are_reproducible_balanced_and_mnist_sized():
    x1, y1 = generate_shapes(200, 28, seed=3)
    x2, y2 = generate_shapes(200, 28, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (200, 1, 28, 28) and x1.dtype == torch.uint8
    assert torch.bincount(y1, minlength=len(SHAPE_CLASSES)).tolist() == [20] * 10
    assert not torch.equal(generate_shapes(200, 28, seed=4)[0], x1)


def test_every_shape_class_draws_something_distinct():
    x, y = generate_shapes(100, 28, seed=0)
    means = torch.stack([x[y == c].float().mean(0) for c in range(10)])
    assert (x.float().flatten(1).amax(1) > 100).all()        # every image shows a figure
    dist = torch.cdist(means.flatten(1), means.flatten(1))
    assert dist[~torch.eye(10, dtype=torch.bool)].min() > 0


def test_load_shapes_from_config():
    cfg = OmegaConf.create({"name": "shapes", "image_size": 28, "channels": 1, "train_size": 50,
                            "test_size": 20, "generator_seed": 0})
    data = load_dataset(cfg)
    assert data.train_x.shape == (50, 1, 28, 28) and data.test_y.shape == (20,)


def test_missing_mnist_without_download_says_where_to_put_files(tmp_path):
    cfg = OmegaConf.create({"name": "mnist", "root": str(tmp_path), "download": False,
                            "image_size": 28, "channels": 1})
    with pytest.raises(UsageError, match="MNIST not found: put train-images-idx3-ubyte"):
        load_dataset(cfg)


def test_corrupted_mnist_file_is_named(tmp_path):
    for name in MNIST_MD5:
        (tmp_path / name).write_bytes(b"not mnist")
    with pytest.raises(UsageError, match="corrupted"):
        mnist_files_ok(tmp_path)


# ---------------------------------------------------------------- image folders and CIFAR-10

import shutil  # noqa: E402
import tarfile  # noqa: E402
from pathlib import Path  # noqa: E402
import zipfile  # noqa: E402

from torchvision.io import encode_jpeg, encode_png  # noqa: E402

from poolbench import data_cifar  # noqa: E402
from poolbench.data_folder import load_image_folder  # noqa: E402

# The tests write their images with torchvision's encoders, deprecated (not broken) since 0.29.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


def make_image_folder(root, classes=("cat", "dog"), per_class=(3, 2), size=8, channels=3, seed=0):
    """A tiny train/<class>/, test/<class>/ dataset of PNGs; returns the images by split, in label order."""
    gen = torch.Generator().manual_seed(seed)
    expected = {}
    for split, count in zip(("train", "test"), per_class):
        images = []
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = torch.randint(0, 256, (channels, size, size), dtype=torch.uint8, generator=gen)
                (root / split / name / f"{i:03d}.png").write_bytes(bytes(encode_png(image).tolist()))
                images.append(image)
        expected[split] = torch.stack(images) if images else None
    return expected


def pack(folder, archive):
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(folder.rglob("*")):
                zf.write(path, f"{folder.name}/{path.relative_to(folder)}")
    else:
        with tarfile.open(archive, "w:xz" if archive.suffix == ".xz" else "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
    return archive


@pytest.mark.parametrize("form", ["folder", "set.tar.xz", "set.tar.gz", "set.zip"])
def test_image_folder_loads_pixels_exactly_from_folder_or_archive(tmp_path, form):
    expected = make_image_folder(tmp_path / "set")
    source = tmp_path / "set" if form == "folder" else pack(tmp_path / "set", tmp_path / form)
    images = load_image_folder(source, tmp_path / "cache", image_size=8, channels=3)
    assert images.classes == ["cat", "dog"]
    assert torch.equal(images.train_x, expected["train"]) and torch.equal(images.test_x, expected["test"])
    assert images.train_y.tolist() == [0, 0, 0, 1, 1, 1] and images.test_y.tolist() == [0, 0, 1, 1]
    assert images.decode_seconds is not None and images.cache.is_file()


def test_image_folder_cache_is_used_then_rebuilt_when_damaged_or_stale(tmp_path):
    make_image_folder(tmp_path / "set")
    first = load_image_folder(tmp_path / "set", tmp_path / "cache", 8, 3)
    again = load_image_folder(tmp_path / "set", tmp_path / "cache", 8, 3)
    assert again.decode_seconds is None and torch.equal(again.train_x, first.train_x)
    first.cache.write_bytes(first.cache.read_bytes()[:100])  # truncated cache: decode again, no error
    rebuilt = load_image_folder(tmp_path / "set", tmp_path / "cache", 8, 3)
    assert rebuilt.decode_seconds is not None and torch.equal(rebuilt.train_x, first.train_x)
    (tmp_path / "set" / "train" / "cat" / "000.png").unlink()  # changed source: a new cache key
    assert load_image_folder(tmp_path / "set", tmp_path / "cache", 8, 3).train_x.shape[0] == 5


def test_image_folder_converts_channels_and_resizes_from_config(tmp_path):
    make_image_folder(tmp_path / "set", size=12)
    jpeg = encode_jpeg(torch.full((3, 20, 10), 200, dtype=torch.uint8))
    (tmp_path / "set" / "train" / "dog" / "odd.jpg").write_bytes(bytes(jpeg.tolist()))
    images = load_image_folder(tmp_path / "set", tmp_path / "cache", image_size=6, channels=1)
    assert images.train_x.shape == (7, 1, 6, 6) and images.test_x.shape == (4, 1, 6, 6)
    assert abs(int(images.train_x[-1].float().mean()) - 200) <= 3  # the JPEG, resized and grayed


@pytest.mark.parametrize("damage, message", [
    (lambda root: shutil.rmtree(root / "test"), "has no test/ split"),
    (lambda root: (root / "train" / "bird").mkdir(), r"Class 'bird' in .*/train/ has no images"),
    (lambda root: (root / "train" / "dog" / "bad.jpg").write_bytes(b"not an image"),
     r"Cannot read image .*train/dog/bad\.jpg"),
    (lambda root: (root / "train" / "dog" / "cut.png").write_bytes(
        (root / "train" / "dog" / "000.png").read_bytes()[:40]), r"Cannot read image .*train/dog/cut\.png"),
    (lambda root: shutil.copytree(root / "test" / "cat", root / "test" / "cow"), "test/ has class 'cow'"),
    (lambda root: shutil.rmtree(root / "train"), "has no train/ split"),
])
@pytest.mark.parametrize("form", ["folder", "set.tar.gz"])
def test_image_folder_problems_are_named(tmp_path, damage, message, form):
    make_image_folder(tmp_path / "set")
    damage(tmp_path / "set")
    source = tmp_path / "set" if form == "folder" else pack(tmp_path / "set", tmp_path / form)
    with pytest.raises(UsageError, match=message):
        load_image_folder(source, tmp_path / "cache", 8, 3)


def test_image_folder_that_is_not_one(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"x")
    with pytest.raises(UsageError, match="holds no train/<class>/ images"):
        load_image_folder(tmp_path / "photos", tmp_path / "cache", 8, 3)
    with pytest.raises(UsageError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere", tmp_path / "cache", 8, 3)


def test_imagefolder_dataset_takes_classes_and_statistics_from_the_data(tmp_path):
    from poolbench.config import compose_config

    make_image_folder(tmp_path / "set", classes=("a", "b", "c"), size=8)
    cfg = compose_config(["data=imagefolder", f"data.root={tmp_path / 'set'}", f"data.cache={tmp_path / 'c'}",
                          "data.image_size=8", "eval.max_shift=2"])
    data = load_dataset(cfg.data)
    assert data.classes == ["a", "b", "c"] and cfg.data.num_classes == 3
    assert len(cfg.data.mean) == 3 and all(0.3 < m < 0.7 for m in cfg.data.mean)  # uniform noise: ~0.5
    with pytest.raises(UsageError, match="data.root=PATH"):
        load_dataset(compose_config(["data=imagefolder"]).data)
    wrong = compose_config(["data=imagefolder", f"data.root={tmp_path / 'set'}", f"data.cache={tmp_path / 'c'}",
                            "data.image_size=8", "eval.max_shift=2", "data.num_classes=5"])
    with pytest.raises(UsageError, match="data.num_classes is 5 but .* has 3 class folders"):
        load_dataset(wrong.data)


def cifar_cfg(tmp_path, *overrides):
    from poolbench.config import compose_config

    return compose_config(["data=cifar10", f"data.root={tmp_path / 'root'}", *overrides]).data


def test_cifar10_from_an_image_folder_archive_via_data_source(tmp_path):
    make_image_folder(tmp_path / "cifar", classes=data_cifar.CLASSES, per_class=(2, 1), size=32)
    archive = pack(tmp_path / "cifar", tmp_path / "cifar.tar.xz")
    data = load_dataset(cifar_cfg(tmp_path, f"data.source={archive}"))
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_y.tolist() == list(range(10))
    assert list((tmp_path / "root" / "cifar10").glob("cache-*.pt"))  # decoded once, cached under data.root
    assert "cached" in load_dataset(cifar_cfg(tmp_path, f"data.source={archive}")).source


def test_cifar10_source_with_other_classes_points_to_imagefolder(tmp_path):
    make_image_folder(tmp_path / "set", size=32)
    with pytest.raises(UsageError, match="not CIFAR-10's: use data=imagefolder"):
        load_dataset(cifar_cfg(tmp_path, f"data.source={tmp_path / 'set'}"))


def fake_batches(folder, monkeypatch):
    """Python batches in CIFAR-10's format (tiny), with their MD5s standing in for the real ones."""
    import pickle

    from torchvision.datasets import CIFAR10

    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for name, _ in CIFAR10.train_list + CIFAR10.test_list:
        images = torch.randint(0, 256, (4, 3072), dtype=torch.uint8, generator=gen).numpy()
        (folder / name).write_bytes(pickle.dumps({"data": images, "labels": [0, 1, 2, 3]}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": data_cifar.CLASSES}))
    from poolbench.data import md5

    digests = {p.name: md5(p) for p in folder.iterdir()}
    monkeypatch.setattr(data_cifar, "batch_md5s", lambda: dict(digests))


def test_cifar10_python_batches_are_read_and_checked(tmp_path, monkeypatch):
    fake_batches(tmp_path / "root" / "cifar-10-batches-py", monkeypatch)
    data = load_dataset(cifar_cfg(tmp_path, "data.download=false"))
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    with open(tmp_path / "root" / "cifar-10-batches-py" / "data_batch_3", "r+b") as handle:
        handle.truncate(100)  # a truncated batch is caught by its MD5 before pickle reads it
    with pytest.raises(UsageError, match="data_batch_3 is corrupted"):
        load_dataset(cifar_cfg(tmp_path, "data.download=false"))


def test_cifar10_original_archive_as_source_is_unpacked_safely(tmp_path, monkeypatch):
    fake_batches(tmp_path / "orig" / "cifar-10-batches-py", monkeypatch)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "orig" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    data = load_dataset(cifar_cfg(tmp_path, f"data.source={archive}"))
    assert data.train_x.shape[0] == 20 and (tmp_path / "root" / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar10_missing_without_network_says_what_to_do(tmp_path, monkeypatch):
    from urllib.error import URLError

    import torchvision.datasets.utils as tv_utils

    def no_network(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(tv_utils, "download_url", no_network)
    with pytest.raises(UsageError, match=r"CIFAR-10 not found in .*download failed.*data\.source=PATH"):
        load_dataset(cifar_cfg(tmp_path))


def test_cifar10_download_is_checked_before_use(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def bad_download(url, root, filename, md5=None):  # a mirror serving the wrong bytes
        Path(root, filename).write_bytes(b"not the archive")

    monkeypatch.setattr(tv_utils, "download_url", bad_download)
    with pytest.raises(UsageError, match="failed its MD5 check"):
        load_dataset(cifar_cfg(tmp_path))
    assert not (tmp_path / "root" / "cifar-10-batches-py").exists()


def test_missing_mnist_when_every_download_fails(tmp_path, monkeypatch):
    import poolbench.data as data_module

    monkeypatch.setattr(data_module, "_torchvision_download_mnist", lambda root: False)
    monkeypatch.setattr(data_module, "_npm_pack_mnist", lambda raw: False)
    cfg = OmegaConf.create({"name": "mnist", "root": str(tmp_path), "download": True,
                            "image_size": 28, "channels": 1})
    with pytest.raises(UsageError, match="MNIST not found"):
        load_dataset(cfg)


def test_truncated_mnist_file_is_corrupted(tmp_path):
    from poolbench.config import compose_config

    source = Path(str(compose_config([]).data.root)).expanduser() / "MNIST" / "raw"
    if not mnist_files_ok(source):
        pytest.skip("needs the MNIST raw files")
    for name in MNIST_MD5:
        shutil.copy(source / name, tmp_path / name)
    with open(tmp_path / "t10k-labels-idx1-ubyte", "r+b") as handle:
        handle.truncate(5000)
    with pytest.raises(UsageError, match="t10k-labels-idx1-ubyte is corrupted"):
        mnist_files_ok(tmp_path)


# ---------------------------------------------------------------- poolbench data download|verify|info

def test_data_info_shows_path_size_samples_classes_and_source(tmp_path):
    from rich.console import Console

    from poolbench import datacmd

    make_image_folder(tmp_path / "set")
    overrides = [f"data.root={tmp_path / 'set'}", f"data.cache={tmp_path / 'c'}", "data.image_size=8",
                 "eval.max_shift=2"]
    console = Console(width=300, record=True)
    for table in datacmd.info("imagefolder", overrides):
        console.print(table)
    text = console.export_text()
    assert str(tmp_path / "set") in text and "6 train, 4 test, (3, 8, 8) uint8" in text
    assert "2: cat, dog" in text and "decoded in" in text and "KB" in text


def test_data_verify_finds_a_bad_md5_and_an_unreadable_image(tmp_path):
    from poolbench import datacmd
    from poolbench.errors import RunError

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_MD5:
        (raw / name).write_bytes(b"wrong")
    with pytest.raises(RunError, match="4 check\\(s\\) failed"):
        datacmd.verify("mnist", [f"data.root={tmp_path}"])
    make_image_folder(tmp_path / "set")
    overrides = [f"data.root={tmp_path / 'set'}", f"data.cache={tmp_path / 'c'}", "data.image_size=8",
                 "eval.max_shift=2"]
    assert datacmd.verify("imagefolder", overrides).row_count == 1
    (tmp_path / "set" / "test" / "cat" / "000.png").write_bytes(b"junk")  # cache still holds the old image
    with pytest.raises(RunError, match="1 check\\(s\\) failed"):
        datacmd.verify("imagefolder", overrides)


def test_data_download_runs_the_source_chain(tmp_path, monkeypatch, capsys):
    from poolbench import datacmd

    fake_batches(tmp_path / "root" / "cifar-10-batches-py", monkeypatch)
    datacmd.download("cifar10", [f"data.root={tmp_path / 'root'}"])
    assert capsys.readouterr().out.startswith("cifar10: 20 train + 4 test images from ")


def test_data_verify_of_a_batches_source_checks_md5s(tmp_path, monkeypatch):
    from poolbench import datacmd

    fake_batches(tmp_path / "copy" / "cifar-10-batches-py", monkeypatch)
    table = datacmd.verify("cifar10", [f"data.root={tmp_path / 'root'}", f"data.source={tmp_path / 'copy'}"])
    assert table.row_count == 7


def test_data_commands_name_unknown_datasets():
    from poolbench import datacmd

    with pytest.raises(UsageError, match="choose one of: cifar10, imagefolder, mnist, shapes"):
        datacmd.info("nope", [])
