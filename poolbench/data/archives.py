"""Reading and unpacking .tar(.gz/.xz/.bz2) and .zip archives without letting a member escape.

Every member name is checked before anything is read or written: an absolute path, a `..`
component, a link (symbolic or hard) or a device file refuses the whole archive. So neither
reading nor extraction can touch a file outside the target folder, whoever made the archive.
A damaged or truncated archive ends in one sentence naming the file.
"""

from __future__ import annotations

import lzma
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from poolbench.errors import UsageError, first_line

ARCHIVE_SUFFIXES = (".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar", ".zip")
_DAMAGE = (tarfile.TarError, zipfile.BadZipFile, EOFError, lzma.LZMAError, zlib.error, OSError)


def is_archive(path: Path) -> bool:
    return Path(path).is_file() and str(path).lower().endswith(ARCHIVE_SUFFIXES)


def safe_name(name: str, archive: Path) -> PurePosixPath:
    """The member's path relative to the archive root; refuses names that could escape it."""
    posix = name.replace("\\", "/")
    path = PurePosixPath(posix)
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or ".." in path.parts:
        raise UsageError(f"Archive {archive} holds an unsafe member '{name}' (absolute path or '..'): "
                         "refusing it; repack the archive with relative paths.")
    return PurePosixPath(*[part for part in path.parts if part not in ("", ".")])


def _refuse_link(name: str, archive: Path) -> None:
    raise UsageError(f"Archive {archive} holds a link or special file '{name}': refusing it; "
                     "repack the archive with plain files only.")


def iter_files(archive: Path) -> Iterator[tuple[PurePosixPath, bytes | None]]:
    """Yield (relative path, contents) for each member in archive order; folders come with None.

    The archive is read in one sequential pass (fast for .tar.xz), nothing is written to disk.
    """
    return _members(Path(archive), read=True)


def iter_members(archive: Path) -> Iterator[tuple[PurePosixPath, int | None]]:
    """Yield (relative path, size in bytes) for each member, folders with None, reading no member's
    contents: what `poolbench data info` counts, checked for unsafe names and links as iter_files is."""
    return _members(Path(archive), read=False)


def _members(archive: Path, read: bool):
    try:
        if str(archive).lower().endswith(".zip"):
            yield from _iter_zip(archive, read)
        else:
            yield from _iter_tar(archive, read)
    except _DAMAGE as err:
        raise UsageError(f"Archive {archive} is damaged or truncated ({type(err).__name__}: "
                         f"{first_line(err, 'no detail')}): copy or download it again.") from None


def _iter_tar(archive: Path, read: bool):
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            rel = safe_name(member.name, archive)
            if member.isdir():
                yield rel, None
            elif member.isfile():
                yield rel, tar.extractfile(member).read() if read else member.size
            else:
                _refuse_link(member.name, archive)


def _iter_zip(archive: Path, read: bool):
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = safe_name(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type recorded
                _refuse_link(info.filename, archive)
            if info.is_dir():
                yield rel, None
            else:
                yield rel, zf.read(info) if read else info.file_size


def member_names(archive: Path, limit: int) -> list[PurePosixPath]:
    """The first `limit` member paths (enough to recognize a layout without reading it all)."""
    names = []
    for rel, _ in iter_members(archive):
        names.append(rel)
        if len(names) >= limit:
            break
    return names


def extract(archive: Path, target: Path) -> Path:
    """Unpack `archive` into the folder `target`, which must not exist yet; returns `target`.

    Files go to a temporary sibling folder first, renamed into place at the end, so an
    interrupted extraction never leaves a half-filled `target`.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise UsageError(f"{target} already exists: delete it to unpack {archive} again.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    root = partial.resolve()
    try:
        for rel, contents in iter_files(archive):
            dest = (partial / rel).resolve()
            if dest != root and root not in dest.parents:  # belt and braces: names were checked
                raise UsageError(f"Archive {archive} member '{rel}' would land outside {target}: refusing it.")
            if contents is None:
                dest.mkdir(parents=True, exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(contents)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target
