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
