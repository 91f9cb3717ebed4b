import io
import stat
import tarfile
import zipfile

import pytest

from poolbench.data.archives import extract, is_archive, iter_files
from poolbench.errors import UsageError


def _tar(path, members, mode="w:gz"):
    """members: (name, bytes) for files, (name, ("symlink"|"hardlink", target)) for links."""
    with tarfile.open(path, mode) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type = tarfile.SYMTYPE if content[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members:
            zf.writestr(name, content)
    return path


@pytest.mark.parametrize("suffix, mode", [(".tar.gz", "w:gz"), (".tar.xz", "w:xz"), (".zip", None)])
def test_plain_archives_read_and_extract_inside_the_target(tmp_path, suffix, mode):
    members = [("data/train/a/1.txt", b"one"), ("data/test/a/2.txt", b"two")]
    archive = tmp_path / f"set{suffix}"
    _zip(archive, members) if mode is None else _tar(archive, members, mode)
    assert is_archive(archive)
    assert {str(name): blob for name, blob in iter_files(archive)} == dict(members)
    target = extract(archive, tmp_path / "out")
    assert (target / "data/train/a/1.txt").read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", f"set{suffix}"]  # no partial folder left


@pytest.mark.parametrize("name", ["../escaped.txt", "ok/../../escaped.txt", "/tmp/escaped-abs.txt"])
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_members_that_would_escape_refuse_the_archive(tmp_path, name, kind):
    archive = tmp_path / ("bad.tar.gz" if kind == "tar" else "bad.zip")
    members = [("fine.txt", b"x"), (name, b"evil")]
    if kind == "tar":
        _tar(archive, members)
    else:
        with zipfile.ZipFile(archive, "w") as zf:  # ZipFile.writestr keeps the name as given
            zf.writestr("fine.txt", b"x")
            zf.writestr(zipfile.ZipInfo(name), b"evil")
    inside = tmp_path / "deep" / "target"
    with pytest.raises(UsageError, match="unsafe member"):
        extract(archive, inside)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "deep" / "escaped.txt").exists()
    assert not inside.exists() and list((tmp_path / "deep").iterdir()) == []


@pytest.mark.parametrize("link", [("symlink", "/etc/passwd"), ("symlink", "../../outside"),
                                  ("hardlink", "/etc/passwd")])
def test_links_refuse_the_archive(tmp_path, link):
    archive = _tar(tmp_path / "links.tar.gz", [("a.txt", b"x"), ("link", link)])
    with pytest.raises(UsageError, match="link or special file 'link'"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_symlink_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UsageError, match="link or special file"):
        list(iter_files(archive))


@pytest.mark.parametrize("suffix, mode", [(".tar.xz", "w:xz"), (".tar.gz", "w:gz"), (".zip", None)])
def test_truncated_archive_is_named_as_damaged(tmp_path, suffix, mode):
    import os

    archive = tmp_path / f"big{suffix}"
    members = [(f"f{i}.bin", os.urandom(20000)) for i in range(5)]
    _zip(archive, members) if mode is None else _tar(archive, members, mode)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UsageError, match=f"Archive {archive} is damaged or truncated"):
        list(iter_files(archive))


def test_extract_refuses_to_overwrite(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [("a.txt", b"x")])
    (tmp_path / "out").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        extract(archive, tmp_path / "out")
