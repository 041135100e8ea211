"""Atomic file and directory writes: a run killed mid-write (SIGKILL, power loss) leaves the
old version or the new one, never half of one.

A file is written to ``<name>.tmp`` beside it, fsync'ed and renamed over the old one
(``atomic_write``); a directory (a checkpoint, an exported pipeline) is written to a
temporary directory whose files are fsync'ed, then swapped in (``replace_dir``). The swap
is one ``renameat2(RENAME_EXCHANGE)`` on Linux, so a reader never finds the directory
missing; elsewhere it is two renames, and a kill between them leaves the old directory at
``<name>.old``, which ``recover_dir`` (and the next ``replace_dir``) puts back.
Append-only logs are ``envs.logs``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def fsync_path(path: str | os.PathLike) -> None:
    """Make a file's data, or a directory's entries (names created or renamed in it), durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file under ``root``, then every directory (deepest first) and ``root`` itself."""
    dirs = []
    for d, _, files in os.walk(root):
        dirs.append(d)
        for f in files:
            fsync_path(os.path.join(d, f))
    for d in reversed(dirs):
        fsync_path(d)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kw) -> Iterator:
    """``with atomic_write(p) as f: f.write(...)``: writes ``p.tmp``, fsyncs it and renames it to
    ``p`` when the block ends without an error (then fsyncs the folder); on an error the
    temporary file is removed and ``p`` is untouched."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode, **open_kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """``Path.write_text`` that a kill cannot leave half-written."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2``); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # this file system or kernel cannot exchange
    raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")


def recover_dir(dst: str | os.PathLike, old: str | os.PathLike | None = None) -> bool:
    """Put back a directory that a killed two-rename swap left at ``old`` (default ``<dst>.old``)
    with nothing at ``dst``; True when it did."""
    dst = Path(dst)
    old = Path(old) if old is not None else dst.with_name(dst.name + ".old")
    if not dst.exists() and old.is_dir():
        os.rename(old, dst)
        fsync_path(dst.parent)
        return True
    return False


def replace_dir(tmp: str | os.PathLike, dst: str | os.PathLike, old: str | os.PathLike | None = None) -> Path:
    """Make the finished directory ``tmp`` be ``dst`` (same file system), atomically.

    The files under ``tmp`` are fsync'ed first. An existing ``dst`` is swapped out in one step
    where the kernel can (``renameat2``), else renamed to ``old`` (default ``<dst>.old``) before
    ``tmp`` takes its place; either way the previous contents are deleted afterwards."""
    tmp, dst = Path(tmp), Path(dst)
    old = Path(old) if old is not None else dst.with_name(dst.name + ".old")
    fsync_tree(tmp)
    recover_dir(dst, old)  # an earlier swap killed between its renames
    if dst.exists():
        if _exchange(tmp, dst):
            old = tmp  # tmp now holds the previous contents
        else:
            shutil.rmtree(old, ignore_errors=True)
            os.rename(dst, old)
            os.rename(tmp, dst)
        fsync_path(dst.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, dst)
        fsync_path(dst.parent)
    return dst


def write_dir(dst: str | os.PathLike, write) -> Path:
    """``write(tmp)`` fills a fresh directory beside ``dst`` (e.g. a model's ``save_pretrained``),
    which then replaces ``dst`` atomically (``replace_dir``)."""
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    return replace_dir(tmp, dst)
