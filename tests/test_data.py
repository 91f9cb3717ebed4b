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
