"""The chain every file-based dataset follows: the files in their folder, checked against their
published MD5s; else a download (when data.download allows) and the same check; else one
sentence naming the folder and the files to put there."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from pathlib import Path

from poolbench.data.base import verified_files
from poolbench.errors import UsageError, first_line

log = logging.getLogger(__name__)


def checked_files(data_cfg, folder: Path, digests: dict[str, str], what: str,
                  download: Callable[[], None]) -> tuple[list[str], str]:
    """(files used despite an MD5 mismatch, where the files came from) once `folder` holds them all."""
    allow = bool(data_cfg.get("allow_checksum_mismatch", False))
    fix = f"delete it and run again to fetch a fresh copy, or put the published file in {folder}"
    differ = verified_files(folder, digests, what, fix, allow)
    if differ is not None:
        return differ, str(folder)
    reason = "data.download is false"
    if data_cfg.get("download"):
        try:  # torchvision prints each URL it tries; keep the console for results
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                download()
            reason = "the download was incomplete"
        except UsageError:
            raise
        except Exception as err:  # no network, mirror down: say so below
            reason = f"download failed: {first_line(err)}"
            log.info("%s download failed: %s", what, err)
        differ = verified_files(folder, digests, what, fix, allow)
        if differ is not None:
            return differ, f"{folder} (downloaded)"
    raise UsageError(f"{what} not found ({reason}): put {', '.join(digests)} in {folder} "
                     "(or point data.root at a folder that holds them there).")
