"""POSIX shared-memory segments: create, write, map read-only, unlink.

These are the segments `multiprocessing.shared_memory` makes, opened through `_posixshmem`
directly so that Python 3.11's resource tracker never owns them (it would unlink a segment
when any process that attached it exits, and print leak warnings). Names carry the session
id: `/asyncray-<session>-<object hex>`, so a crash clean-up removes exactly this session's.

Mappings are cached per process and shared by every value read from one segment; a mapping
closes when the last zero-copy view into it is garbage-collected (a weakref finalizer on the
base array), so memory returns to the system once the store unlinked the segment.
"""
from __future__ import annotations

import mmap
import os
import threading
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np

try:
    import _posixshmem
except ImportError:  # pragma: no cover - non-POSIX platforms
    _posixshmem = None

SHM_DIR = "/dev/shm"


def segment_name(session: str, object_id: bytes) -> str:
    return f"/asyncray-{session}-{object_id.hex()}"


def session_prefix(session: str) -> str:
    return f"asyncray-{session}-"


def write(name: str, chunks: list, total: int) -> None:
    """Create segment `name` holding the concatenation of `chunks` (bytes-like)."""
    fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        os.ftruncate(fd, max(total, 1))
        # pwrite into an unmapped fd: no page-fault per 4 KiB page on our side (anchors.md §2).
        offset = 0
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            while view:
                n = os.pwrite(fd, view, offset)
                offset += n
                view = view[n:]
    except BaseException:
        os.close(fd)
        unlink(name)
        raise
    os.close(fd)


def spill(name: str, path: str) -> None:
    """Copy segment `name` into file `path` (then the caller unlinks the segment)."""
    fd = _posixshmem.shm_open(name, os.O_RDONLY, mode=0o600)
    try:
        size = os.fstat(fd).st_size
        with open(path, "wb") as out:
            offset = 0
            while offset < size:
                n = os.sendfile(out.fileno(), fd, offset, min(size - offset, 1 << 30))
                if n == 0:
                    break
                offset += n
    finally:
        os.close(fd)


def restore(path: str, name: str) -> None:
    """Bring a spilled object back into segment `name`."""
    with open(path, "rb") as f:
        data = f.read()
    write(name, [data], len(data))


def unlink(name: str) -> None:
    try:
        _posixshmem.shm_unlink(name)
    except FileNotFoundError:
        pass


def unlink_session(session: str) -> list[str]:
    """Remove every segment of `session`; returns the names removed (crash clean-up)."""
    prefix = session_prefix(session)
    removed = []
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return removed
    for entry in names:
        if entry.startswith(prefix):
            unlink("/" + entry)
            removed.append(entry)
    return removed


class MappingCache:
    """Read-only mappings of segments, shared by all zero-copy views into each one.

    Recently used mappings are also kept after their last view is gone (up to `keep_bytes`),
    so a worker reading the same large argument task after task does not map and page-fault
    it each time. A kept mapping is dropped as soon as its segment is unlinked (checked on
    use and by `sweep`, which the client runs while anything is kept) or unused for
    `keep_seconds`, so it never holds freed memory for long.
    """

    def __init__(self, keep_bytes: int = 1 << 30, keep_seconds: float = 10.0,
                 on_keep: Callable[[], None] | None = None) -> None:
        # Reentrant: dropping a kept array under the lock may run its finalizer (_forget) here.
        self._lock = threading.RLock()
        self._bases: dict[str, weakref.ref] = {}
        self._kept: OrderedDict[str, tuple["np.ndarray", int, float]] = OrderedDict()  # name -> (base, inode, used)
        self._kept_bytes = 0
        self.keep_bytes = keep_bytes
        self.keep_seconds = keep_seconds
        self._on_keep = on_keep

    def base(self, name: str) -> "np.ndarray":
        """A read-only uint8 array over the whole segment; views of it keep the mapping alive."""
        with self._lock:
            kept = self._kept.get(name)
            if kept is not None:
                if _inode(name) == kept[1]:
                    self._kept[name] = (kept[0], kept[1], time.monotonic())
                    self._kept.move_to_end(name)
                    return kept[0]
                self._unkeep(name)
            ref = self._bases.get(name)
            arr = ref() if ref is not None else None
            if arr is not None:
                return arr
            fd = _posixshmem.shm_open(name, os.O_RDONLY, mode=0o600)
            try:
                st = os.fstat(fd)
                mm = mmap.mmap(fd, st.st_size, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            import numpy as np  # here, not at import: the node manager never maps a segment

            arr = np.frombuffer(mm, dtype=np.uint8)
            self._bases[name] = weakref.ref(arr)
            weakref.finalize(arr, self._forget, name, mm)
            if st.st_size <= self.keep_bytes:
                self._kept[name] = (arr, st.st_ino, time.monotonic())
                self._kept_bytes += st.st_size
                while self._kept_bytes > self.keep_bytes:
                    self._unkeep(next(iter(self._kept)))
                notify = self._on_keep
            else:
                notify = None
        if notify is not None:
            notify()
        return arr

    def _unkeep(self, name: str) -> None:
        arr, _inode_, _used = self._kept.pop(name)
        self._kept_bytes -= arr.nbytes

    def sweep(self) -> bool:
        """Drop kept mappings whose segment is gone or that went unused; True while any is kept."""
        now = time.monotonic()
        with self._lock:
            for name, (_arr, inode, used) in list(self._kept.items()):
                if now - used > self.keep_seconds or _inode(name) != inode:
                    self._unkeep(name)
            return bool(self._kept)

    def _forget(self, name: str, mm: mmap.mmap) -> None:
        with self._lock:
            ref = self._bases.get(name)
            if ref is not None and ref() is None:
                del self._bases[name]
        try:
            mm.close()
        except BufferError:  # still exported somewhere: closed when that goes
            pass

    def live_mappings(self) -> int:
        with self._lock:
            return sum(1 for r in self._bases.values() if r() is not None)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._kept_bytes = 0


def _inode(name: str) -> int:
    try:
        return os.stat(SHM_DIR + name).st_ino
    except FileNotFoundError:
        return -1
