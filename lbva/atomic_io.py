"""Writes that a crash — even ``kill -9`` — cannot leave half done: :func:`atomic_file`, :func:`atomic_folder`.

Both write into a temporary sibling of the target and move it into place at the end:

* a file (a training checkpoint) is moved over the old one with one ``os.replace``, which is atomic;
* a folder (a policy folder, a model folder, a LeRobot export) replaces an existing one with Linux's
  ``renameat2(RENAME_EXCHANGE)``, which swaps the two names in one step, so a complete folder stands at ``NAME`` at
  every moment — also for readers that know nothing of lbva (LeRobot's loader). Where the file system cannot exchange
  (not Linux, some network file systems) the old folder is moved aside to ``.NAME.old`` first and the new one moved
  in: a crash between those two renames leaves nothing at ``NAME`` but the old version beside it, and
  :func:`recover` (run by every later write, and by lbva's loaders) moves it back.

Temporary siblings are named ``.NAME.lbva-tmp-…``. A writer holds an exclusive ``flock`` on the target's folder while
it works, and the lock dies with its process, so every write first removes the temporaries it finds there: under the
lock they can only be leftovers of a writer that was killed. Writers in one folder therefore take turns.

Imports only the standard library and :mod:`lbva.errors`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["TMP_TAG", "atomic_file", "atomic_folder", "backup_path", "leftovers", "recover"]

TMP_TAG = ".lbva-tmp-"
_held = threading.local()  # folders this thread has locked (a nested write in the same folder must not wait on itself)


def backup_path(target: str | os.PathLike) -> Path:
    """Where a folder write keeps the previous version between its two renames: ``.NAME.old`` beside it."""
    target = Path(target)
    return target.with_name(f".{target.name}.old")


def leftovers(folder: str | os.PathLike) -> list[Path]:
    """Temporary files and folders of lbva writers in ``folder`` (none remain once a write has finished)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith(".") and TMP_TAG in p.name)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[bool]:
    """Hold the folder's lock; yields False when this thread already held it (a write nested in another one in the
    same folder, whose temporaries are alive and must not be cleaned)."""
    held = getattr(_held, "folders", None)
    if held is None:
        held = _held.folders = set()
    key = os.path.realpath(folder)
    if key in held:
        yield False
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(key)
        try:
            yield True
        finally:
            held.discard(key)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _clean(folder: Path) -> None:
    """Under the folder lock: remove the temporaries of writers that were killed."""
    for stale in leftovers(folder):
        logger.info("removing %s, left by an interrupted write", stale)
        _remove(stale)


def _settle(target: Path) -> None:
    """Under the folder lock: finish what an interrupted folder swap left (restore or drop ``.NAME.old``)."""
    old = backup_path(target)
    if old.exists():
        if target.exists():
            logger.info("removing %s: the write that replaced it finished", old)
            _remove(old)
        else:
            logger.warning("restoring %s from %s: a write was interrupted between its two renames", target, old)
            os.replace(old, target)


def recover(target: str | os.PathLike) -> bool:
    """Put the previous version back when a folder write was killed between its two renames (``NAME`` missing,
    ``.NAME.old`` present). Returns True when it did. Loaders call this before reading."""
    target = Path(target)
    old = backup_path(target)
    if target.exists() or not old.exists():
        return False
    try:
        with _folder_lock(target.parent):
            if target.exists() or not old.exists():  # another process settled it meanwhile
                return False
            _settle(target)
    except PermissionError as e:
        raise PermissionError(
            e.errno, f"{target} is missing and its previous version is at {old} (a write was interrupted), but this "
            f"user cannot rename it back; rename {old} to {target}", str(target),
        ) from None
    return True


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``). False when this
    system or file system cannot; then nothing was changed."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:  # pragma: no cover - no C library to ask (not POSIX)
            _libc = False
    renameat2 = getattr(_libc, "renameat2", None) if _libc else None
    if renameat2 is None:
        return False
    source, destination = os.fsencode(a), os.fsencode(b)
    if renameat2(_AT_FDCWD, source, _AT_FDCWD, destination, _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, f"cannot swap {a} and {b}: {os.strerror(code)}", str(b))


def _swap_in(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``: exchanged in one step where the system can, else through
    ``.NAME.old`` (see the module docstring); the previous version is removed once the new one stands."""
    if not out.exists():
        os.replace(tmp, out)
        return
    if _exchange(tmp, out):
        _remove(tmp)  # now the previous version; a crash here leaves it for the next write's clean-up
        return
    old = backup_path(out)
    os.replace(out, old)  # a crash from here until the next rename leaves `old` for recover()
    os.replace(tmp, out)
    _remove(old)


def _fsync_folder(folder: Path) -> None:
    try:  # make the renames themselves durable
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path`` in one rename.

    The writer should flush and fsync what it wrote; the rename is made durable here. On an exception the temporary
    file is removed and ``path`` is untouched."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{path} is a folder; give a file path to write", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path.parent) as fresh:
        if fresh:
            _clean(path.parent)
        tmp = path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}")
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Yield an empty temporary folder to write ``out``'s new content into; on success it replaces ``out``.

    ``marker`` is a file every version of this folder holds (``lbva_policy.json``, ``config.json``): an existing,
    non-empty ``out`` without it is not an earlier version of this output, and is refused rather than deleted. On an
    exception the temporary folder is removed and ``out`` is untouched."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{out} is a file; give a folder path to write to", str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(out.parent) as fresh:
        if fresh:
            _clean(out.parent)
        _settle(out)
        if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
            raise FileExistsError(
                errno.EEXIST, f"{out} already holds other files (no {marker}), so it is not an earlier version of "
                "this output and will not be replaced; pass a new or empty folder", str(out),
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_TAG}", dir=out.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the output gets the mode a plain mkdir would
        try:
            yield tmp
            _swap_in(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _fsync_folder(out.parent)
