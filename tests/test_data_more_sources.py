"""Fashion-MNIST, KMNIST, SVHN and CIFAR-100 load from small fabricated files in their own formats;
MD5s are checked (a mismatch refused unless data.allow_checksum_mismatch=true, which the run
records); a missing dataset without network is one sentence naming the folder."""

import pytest
import torch
from datafiles import write_cifar100, write_idx_set, write_svhn
from helpers import cli

from poolbench.config import compose_config
from poolbench.data import idx, load_dataset
from poolbench.errors import UsageError


def config(name, root, **extra):
    overrides = [f"data={name}", f"data.root={root}", "data.download=false"]
    return compose_config(overrides + [f"data.{k}={v}" for k, v in extra.items()]).data


def published(monkeypatch, module, attribute, files):
    """Make the fabricated files the 'published' ones: the MD5 table is the only thing replaced."""
    monkeypatch.setattr(module, attribute, lambda *args: dict(files))


@pytest.mark.parametrize("name,folder", [("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_idx_sets_load_from_their_gz_files(tmp_path, monkeypatch, name, folder):
    files = write_idx_set(tmp_path / folder / "raw")
    import torchvision.datasets

    monkeypatch.setattr(getattr(torchvision.datasets, folder), "resources", list(files.items()))
    data = load_dataset(config(name, tmp_path))
    assert data.train_x.shape == (40, 1, 28, 28) and data.test_x.shape == (20, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.tolist()[:3] == [0, 1, 2]
    assert len(data.classes) == 10 and data.unverified == []


def test_svhn_loads_from_mat_files_and_maps_10_to_0(tmp_path, monkeypatch):
    from poolbench.data import svhn

    files = write_svhn(tmp_path / "SVHN")
    published(monkeypatch, svhn, "digests", files)
    data = load_dataset(config("svhn", tmp_path))
    assert data.train_x.shape == (30, 3, 32, 32) and data.test_x.shape == (10, 3, 32, 32)
    assert data.train_y.tolist()[:10] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_cifar100_loads_fine_labels_and_class_names(tmp_path, monkeypatch):
    from poolbench.data import cifar100

    files = write_cifar100(tmp_path / "cifar-100-python")
    published(monkeypatch, cifar100, "digests", files)
    data = load_dataset(config("cifar100", tmp_path))
    assert data.train_x.shape == (30, 3, 32, 32) and len(data.classes) == 100
    assert data.classes[5] == "class5" and data.test_y.tolist()[:3] == [0, 1, 2]


def test_a_checksum_mismatch_is_refused_unless_allowed_and_then_recorded(tmp_path, monkeypatch):
    from poolbench.data import cifar100

    files = write_cifar100(tmp_path / "cifar-100-python")
    published(monkeypatch, cifar100, "digests", {**files, "train": "0" * 32})
    with pytest.raises(UsageError, match="train is corrupted .*allow_checksum_mismatch=true"):
        load_dataset(config("cifar100", tmp_path))
    data = load_dataset(config("cifar100", tmp_path, allow_checksum_mismatch="true"))
    assert data.unverified == [str(tmp_path / "cifar-100-python" / "train")]


@pytest.mark.parametrize("name,where", [("fashion_mnist", "FashionMNIST/raw"), ("kmnist", "KMNIST/raw"),
                                        ("svhn", "SVHN"), ("cifar100", "cifar-100-python")])
def test_missing_files_without_download_name_the_folder(tmp_path, name, where):
    with pytest.raises(UsageError) as err:
        load_dataset(config(name, tmp_path))
    message = str(err.value)
    assert "not found (data.download is false)" in message and str(tmp_path / where) in message


def test_a_run_records_the_files_used_despite_their_checksum(tmp_path, monkeypatch):
    files = write_idx_set(tmp_path / "KMNIST" / "raw", n_train=64, n_test=16)
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.KMNIST, "resources",
                        [(name, "0" * 32 if "t10k-labels" in name else digest) for name, digest in files.items()])
    result = cli("run", "data=kmnist", f"data.root={tmp_path}", "data.download=false",
                 "data.allow_checksum_mismatch=true", "train.epochs=1", "model.channels=[4]", "eval.shift_pairs=1",
                 "eval.throughput.iters=1", "eval.throughput.warmup=0", "eval.throughput.batch_size=8", "threads=1",
                 f"hydra.run.dir={tmp_path}/run")
    assert result.exit_code == 0, result.output
    import json

    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["run"]["checksum_mismatch"] == [str(tmp_path / "KMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz")]
    assert "MD5 mismatch" in result.output


def test_idx_reader_refuses_a_truncated_file(tmp_path):
    files = write_idx_set(tmp_path)
    path = tmp_path / next(iter(files))
    import gzip

    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))
    with pytest.raises(UsageError, match="header says"):
        idx.read_idx(path)
