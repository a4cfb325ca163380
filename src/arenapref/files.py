"""Outputs that appear whole or not at all, output paths checked before long work, and the cache folder.

Every file arenapref writes goes to a temporary sibling (same folder, so the same file system), is flushed to
disk, and is moved into place with `os.replace`: a reader sees the old file or the new one, never half of one,
and a failed run leaves an existing file as it was. A model directory is built the same way as a whole and
swapped in at the end (`atomic_directory`), so an existing model survives a failed save intact.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from arenapref.errors import OutputError

_REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.EISDIR: "it is a folder", errno.ENOTDIR: "a parent is not a folder",
            errno.EFBIG: "the file is larger than this system allows"}


def output_error(path: str | Path, exc: OSError, what: str = "output") -> OutputError:
    """An OSError while writing `path` as a one-line message that names the path and the reason."""
    reason = _REASONS.get(exc.errno, exc.strerror or str(exc))
    return OutputError(f"cannot write {what} {path}: {reason}; nothing was changed there")


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_siblings(path: Path) -> None:
    """Temporary siblings left by a process that was killed (kill -9, power loss) mid-write: removed once their
    writer is gone, so a crashed run leaves no clutter behind the next one. A live writer's are kept."""
    try:
        candidates = list(path.parent.glob(f".{path.name}.*-*-*"))
    except OSError:
        return
    for sibling in candidates:
        tag, _, rest = sibling.name[len(path.name) + 2:].partition("-")
        pid = rest.partition("-")[0]
        if tag in ("tmp", "old", "probe") and pid.isdigit() and not _alive(int(pid)):
            if sibling.is_dir():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | Path, what: str = "output") -> Iterator[Path]:
    """Yields a temporary sibling of `path` to write; on success it is synced and moved onto `path`.

    >>> with atomic_file("submission.csv") as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp, index=False)
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a folder; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(path, e, what) from None
    remove_stale_siblings(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise output_error(path, e, what) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str, what: str = "output") -> Path:
    with atomic_file(path, what) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any, what: str = "output") -> Path:
    return write_text(path, json.dumps(data, indent=2, default=float) + "\n", what)


def write_frame(frame, path: str | Path, what: str = "output", **to_csv) -> Path:
    """A pandas DataFrame as CSV (or parquet / JSON lines by the file name), atomically."""
    name = Path(path).name.lower()
    with atomic_file(path, what) as tmp:
        if name.endswith(".parquet"):
            frame.to_parquet(tmp, index=False)
        elif name.endswith((".jsonl", ".ndjson")):
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            frame.to_csv(tmp, **({"index": False} | to_csv))
    return Path(path)


# --- directories ---------------------------------------------------------------------------------------------
def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux's renameat2(RENAME_EXCHANGE); False where the system lacks it.

    Hand-written (ctypes, a few lines) because neither the standard library nor a well-kept package offers an
    atomic replacement of a non-empty directory; elsewhere the caller falls back to two renames.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_directory(tmp: Path, target: Path) -> None:
    """Moves the finished directory `tmp` onto `target`, replacing an existing directory there whole."""
    if not target.exists():
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
    else:
        old = _sibling(target, "old")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def check_output_dir(path: str | Path, what: str = "model directory") -> Path:
    """Fails early (before any long work) if `path` cannot become a directory: a file is there, or the parent
    folder cannot be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write {what} {path}: a file with that name exists; name a folder")
    _check_parent_writable(path, what)
    return path


def check_output_file(path: str | Path, what: str = "output") -> Path:
    """Fails early if `path` cannot be written as a file: it is a folder, or its folder is not writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a folder; name a file")
    _check_parent_writable(path, what)
    return path


def _check_parent_writable(path: Path, what: str) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(path, e, what) from None
    probe = _sibling(path, "probe")
    try:
        probe.write_bytes(b"")
    except OSError as e:
        raise output_error(path, e, what) from None
    finally:
        probe.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path, what: str = "model directory") -> Iterator[Path]:
    """Yields an empty temporary sibling directory; on success it replaces `path` whole (an existing directory
    there is kept intact until the new one is complete); on failure it is removed and `path` is untouched."""
    path = check_output_dir(path, what)
    remove_stale_siblings(path)
    tmp = _sibling(path, "tmp")
    try:
        tmp.mkdir()
        yield tmp
        replace_directory(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise output_error(path, e, what) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cache_root(configured: str | None = None) -> Path:
    """Where embeddings and checkpoints are cached: `configured`, $ARENAPREF_CACHE, or ~/.cache/arenapref."""
    return Path(configured or os.environ.get("ARENAPREF_CACHE") or Path.home() / ".cache" / "arenapref")
