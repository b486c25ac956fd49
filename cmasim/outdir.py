"""Output folders that never mix two runs.

Every command that writes a result folder (`run`, `compare`, `replay`) writes into a fresh
temporary folder beside the target and renames it into place only when everything is
written, so a folder holds one complete run or nothing new: an interrupted or failed command
leaves the old folder untouched and no half-written files beside it. A target that exists
and is not empty is refused unless the caller passes `force`, which replaces it whole.

The checks run before any simulation: a folder that cannot be created or written fails at
once with `OutputError`, not after the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".cmasim-tmp-"


@contextmanager
def atomic_file(final: str | Path, tmp: str | Path | None = None, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; when the block ends normally it is renamed onto
    `final` (fsynced first if asked), on any exception -- Ctrl-C and a generator closed early
    included -- it is removed and the exception propagates. The one way a single file is
    written in place (a report page, the columnar trace cache, a results part), so a reader
    sees the old file or the whole new one, never a half-written one.

    `tmp` defaults to `.NAME.tmp` beside `final`.
    """
    final = Path(final)
    tmp = Path(tmp) if tmp is not None else final.with_name(f".{final.name}.tmp")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class OutputError(ValueError):
    """The output folder cannot be used; the message names it and says why."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while a result was being staged: the target folder was left untouched."""

    def __init__(self, target: Path):
        super().__init__(f"interrupted, nothing written to {target}")
        self.target = target


def check_target(target: Path, force: bool) -> None:
    """Refuse a non-empty `target` without `force`, and a target that is a file."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OutputError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise OutputError(f"{target}: folder is not empty; give --force to replace it whole, or another --out")


@contextmanager
def staged_output(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` whole.

    On any exception (KeyboardInterrupt included) the temporary folder is removed, `target`
    is left as it was, and the exception propagates.
    """
    target = Path(target)
    check_target(target, force)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + target.name + "-", dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the result is an ordinary folder
    except OSError as e:
        raise OutputError(f"{target}: cannot write there: {e.strerror or e}") from None
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "old-", dir=parent))
            os.replace(target, old / "x")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except KeyboardInterrupt:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Interrupted(target) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
