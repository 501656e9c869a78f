"""The run's keyed object store: pickled objects in one LMDB environment on /dev/shm.

The nexus creates the store in the run directory (``Store(path, size, create=True)``) and
every actor process opens the same path. Objects are pickled with protocol 5 and their
out-of-band buffers (numpy arrays, ...) are written raw, so an array is never copied into
an intermediate pickle. A value is one frame (integers little-endian)::

    b"PLX5"  u32 n  u64 len(pickle)  u64 len(buffer) * n  pickle  [pad buffer] * n

Buffers of values over about 2 KB (LMDB overflow pages) start on 64-byte boundaries of the
map; in smaller values they may be unaligned, which numpy handles.

Thread safety: a :class:`Store` may be used by one thread at a time; threads that need the
store concurrently open their own (Stores of one path in a process share one LMDB
environment, since LMDB forbids opening it twice). Never use a store across ``fork()``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import pickle
import shutil
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from plexa.errors import KeyNotFound, StoreError, StoreFull

__all__ = ["Store", "StoreStatistics", "remove_store"]

_MAGIC = b"PLX5"
_HEAD = struct.Struct("<4sI")
_ALIGN = 64
_PAGE_HEADER = 16  # LMDB page header on 64-bit: overflow values start 16 bytes into a page
_ZEROS = bytes(_ALIGN)
_MB = 2**20
_NUDGE = b"\x00plexa-nudge"
_MAX_KEY = 511  # LMDB's default key size limit
_LOCK_FILE = 16384  # LMDB's reader table for 126 readers is ~8 KB; a larger file is kept

_ENVS: dict[Path, _Shared] = {}  # real path -> this process's environment there
_ENVS_LOCK = threading.Lock()


@dataclass(frozen=True)
class StoreStatistics:
    """How full the store is: keys, bytes of the pages holding them, capacity in bytes."""

    entries: int
    used_bytes: int
    map_size: int


def _pad(offset: int) -> int:
    """Padding that puts a buffer at value ``offset`` on an ``_ALIGN`` boundary of the map."""
    return -(offset + _PAGE_HEADER) % _ALIGN


def _encode(obj: Any) -> bytes:
    """Serialise ``obj`` into one frame; array data is copied once, by the final join."""
    raws: list[memoryview] = []

    def keep(buffer: pickle.PickleBuffer) -> bool:
        try:
            raws.append(buffer.raw())
        except BufferError:  # not contiguous: let pickle copy it in-band
            return True
        return False

    meta = pickle.dumps(obj, protocol=5, buffer_callback=keep)
    sizes = struct.pack(f"<{len(raws) + 1}Q", len(meta), *(r.nbytes for r in raws))
    parts: list[bytes | memoryview] = [_HEAD.pack(_MAGIC, len(raws)), sizes, meta]
    offset = _HEAD.size + len(sizes) + len(meta)
    for raw in raws:
        pad = _pad(offset)
        parts += (_ZEROS[:pad], raw)
        offset += pad + raw.nbytes
    return b"".join(parts)


def _decode(value: memoryview) -> tuple[memoryview, list[memoryview]]:
    """Split a frame into its pickle and its out-of-band buffers, without copying."""
    magic, count = _HEAD.unpack_from(value)
    if magic != _MAGIC:
        raise StoreError("stored value is not a plexa object frame")
    sizes = struct.unpack_from(f"<{count + 1}Q", value, _HEAD.size)
    offset = _HEAD.size + 8 * (count + 1)
    meta = value[offset : offset + sizes[0]]
    offset += sizes[0]
    buffers = []
    for size in sizes[1:]:
        offset += _pad(offset)
        buffers.append(value[offset : offset + size])
        offset += size
    return meta, buffers


def _key(key: str) -> bytes:
    """``key`` as LMDB takes it."""
    raw = key.encode()
    if not 0 < len(raw) <= _MAX_KEY:
        raise StoreError(f"store keys are 1 to {_MAX_KEY} bytes of UTF-8, not {key[:60]!r}")
    return raw


class _Shared:
    """One process's LMDB environment of a store path, shared by its Store handles, and
    how far this process has reserved the data file (see :meth:`reserve`)."""

    def __init__(self, env: lmdb.Environment, path: Path, reserving: bool) -> None:
        self.env = env
        self.path = path
        self.handles = 0
        self.reserved = 0
        self.fd: int | None = None
        if reserving:
            self.fd = os.open(path / "data.mdb", os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        self.psize: int = env.stat()["psize"]

    def reserve(self, nbytes: int) -> None:
        """Make sure the data file has real blocks for a write of ``nbytes``: the pages
        in use, ``nbytes`` twice over (the value, and the pages it frees and copies) and
        1 MB of slack (tree pages, the free list). Call it inside the write transaction,
        which keeps every other writer out meanwhile.

        With ``writemap`` LMDB writes into a shared mapping of a sparse file, and touching
        a page the filesystem cannot back is SIGBUS; ``posix_fallocate`` turns that into
        ENOSPC here, before any page is touched: :class:`StoreFull`.
        """
        if self.fd is None:
            return
        info = self.env.info()
        need = min((info["last_pgno"] + 1) * self.psize + 2 * nbytes + _MB, info["map_size"])
        if need <= self.reserved:
            return
        # reserve ahead (fewer calls), but no more than needed if the filesystem is short
        for target in (min(max(need, self.reserved + 4 * _MB), info["map_size"]), need):
            try:
                os.posix_fallocate(self.fd, self.reserved, target - self.reserved)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise StoreError(f"cannot reserve room in {self.path}: {exc}") from exc
                continue
            self.reserved = target
            return
        raise StoreFull(f"no room left for the object store in {self.path}")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.env.close()


def _can_reserve(path: Path) -> bool:
    """True if ``posix_fallocate`` works on ``path``'s filesystem and it is not full."""
    probe = path / f".probe-{os.getpid()}-{threading.get_ident()}"
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:
        return False
    try:
        os.posix_fallocate(fd, 0, 4096)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(probe)


def _acquire(path: Path, map_size: int, create: bool) -> _Shared:
    """This process's environment for ``path``, opened on first use."""
    with _ENVS_LOCK:
        shared = _ENVS.get(path)
        if shared is None:
            # The store lives on /dev/shm: RAM, gone at reboot, never reopened after a crash,
            # so fsync buys nothing (sync/metasync off) and there is no disk to read ahead.
            # writemap makes LMDB write values straight into the shared mapping instead of
            # into malloc'd pages it then pwrite()s: 5x faster puts of 512 KB. Touching a
            # page the filesystem cannot back is SIGBUS, so writemap is used only where the
            # data file can be reserved ahead of every write (_Shared.reserve); elsewhere
            # LMDB's writes fail with an error instead. One spare read transaction keeps
            # begin() cheap.
            reserving = _can_reserve(path)
            _prepare_lock_file(path)
            env = lmdb.open(
                str(path),
                map_size=map_size,
                subdir=True,
                create=create,
                mode=0o600,
                max_dbs=0,
                lock=True,
                writemap=reserving,
                sync=False,
                metasync=False,
                readahead=False,
                max_readers=126,
                max_spare_txns=1,
            )
            _reserve_lock_file(path)
            shared = _ENVS[path] = _Shared(env, path, reserving)
        shared.handles += 1
        return shared


def _prepare_lock_file(path: Path) -> None:
    """Create LMDB's reader table with its pages backed, before LMDB writes its header
    into it through a shared mapping (SIGBUS on a full filesystem)."""
    try:
        fd = os.open(
            path / "lock.mdb", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
    except OSError:
        return  # LMDB says why
    try:
        os.posix_fallocate(fd, 0, _LOCK_FILE)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreFull(f"no room left for the object store in {path}") from exc
    finally:
        os.close(fd)


def _reserve_lock_file(path: Path) -> None:
    """Back every page of LMDB's (sparse, shared-mapped) reader table now: a reader that
    registers in a page the filesystem cannot back would get SIGBUS."""
    with contextlib.suppress(OSError):
        fd = os.open(path / "lock.mdb", os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)


def _release(path: Path) -> None:
    """Drop a handle on ``path``'s environment, closing it with the last."""
    with _ENVS_LOCK:
        shared = _ENVS[path]
        shared.handles -= 1
        if not shared.handles:
            del _ENVS[path]
            shared.close()


def _short_of_room(path: Path, nbytes: int) -> bool:
    """True if ``path``'s filesystem has less than ``nbytes`` and 1 MB free."""
    try:
        vfs = os.statvfs(path)
    except OSError:
        return False
    return vfs.f_bavail * vfs.f_frsize < nbytes + _MB


def remove_store(path: str | os.PathLike[str]) -> None:
    """Delete a store's directory (when a run ends); a missing directory is fine."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


class Store:
    """A keyed store of Python objects shared by every process of a run."""

    remove = staticmethod(remove_store)

    def __init__(
        self, path: str | os.PathLike[str], map_size: int, *, create: bool = False
    ) -> None:
        self.path = Path(path)
        if create:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not (self.path / "data.mdb").is_file():
            raise StoreError(f"no object store at {self.path}")
        self._real = self.path.resolve()
        try:
            self._shared = _acquire(self._real, map_size, create)
        except lmdb.Error as exc:
            if _short_of_room(self.path, 0):
                raise StoreFull(f"no room left for the object store in {self.path}") from exc
            raise StoreError(f"cannot open the object store at {self.path}: {exc}") from exc
        self._env: lmdb.Environment | None = self._shared.env
        # A reader killed with kill -9 leaves its slot behind, pinning the pages it could see.
        self._env.reader_check()
        self._prefix = f"{os.getpid():x}.{os.urandom(4).hex()}."
        self._counter = itertools.count()

    def _live(self) -> lmdb.Environment:
        if self._env is None:
            raise StoreError("the object store is closed")
        return self._env

    def put(self, obj: Any, key: str | None = None) -> str:
        """Store ``obj`` under ``key`` (replacing any value) or under a new unique key.

        Returns the key. Raises :class:`StoreFull` if there is no room for the value.
        """
        env, value = self._live(), _encode(obj)
        while True:
            name = key if key is not None else f"{self._prefix}{next(self._counter):x}"
            # A new key must not replace anything: on the (unlikely) clash, draw another.
            if self._write(env, name, value, overwrite=key is not None):
                return name

    def _write(self, env: lmdb.Environment, key: str, value: bytes, overwrite: bool) -> bool:
        for retry in (False, True):
            try:
                with env.begin(write=True) as txn:
                    self._shared.reserve(len(value))
                    return txn.put(_key(key), value, overwrite=overwrite)
            except lmdb.MapFullError:
                if retry:
                    break
                # LMDB reuses freed pages two commits later, and never those a reader (maybe
                # one killed with kill -9) could still see: clear dead readers, then commit a
                # no-op so that pages freed by the last commit become reusable; retry once.
                env.reader_check()
                with contextlib.suppress(lmdb.MapFullError), env.begin(write=True) as txn:
                    self._shared.reserve(0)
                    if txn.put(_NUDGE, b"", overwrite=False):
                        txn.delete(_NUDGE)
            except lmdb.Error as exc:
                # without writemap, a full filesystem shows as a failed write (EIO, ENOSPC)
                if isinstance(exc, lmdb.DiskError) or _short_of_room(self.path, len(value)):
                    raise StoreFull(f"no room left for the object store in {self.path}") from exc
                raise StoreError(f"cannot put {key!r}: {exc}") from exc
        size = env.info()["map_size"] // _MB
        raise StoreFull(
            f"object store full ({size} MB); raise settings.store_size in the pipeline file, "
            f"or delete() objects you no longer need (value of {len(value) / _MB:.1f} MB)"
        )

    def get(self, key: str) -> Any:
        """The object under ``key``, in memory of its own (arrays are writable copies).

        Raises :class:`KeyNotFound` if there is no such key.
        """
        with self._live().begin(buffers=True) as txn:
            value = txn.get(_key(key))
            if value is None:
                raise KeyNotFound(key)
            meta, buffers = _decode(value)
            return pickle.loads(meta, buffers=[bytearray(b) for b in buffers])

    def get_raw(self, key: str) -> bytes | None:
        """The stored bytes under ``key`` as they are (never unpickled), None if absent: for
        moving a value to another machine's store (:meth:`put_raw`)."""
        with self._live().begin() as txn:
            value = txn.get(_key(key))
            return bytes(value) if value is not None else None

    def put_raw(self, key: str, value: bytes) -> None:
        """Store bytes that :meth:`get_raw` read from a store (replacing any value)."""
        self._write(self._live(), key, value, overwrite=True)

    @contextlib.contextmanager
    def view(self, key: str) -> Iterator[Any]:
        """Read the object under ``key`` without copying its buffers.

        ``with store.view(key) as obj:`` numpy arrays in ``obj`` are read-only views straight
        into the store's memory, valid **only inside the block**: afterwards the pages may be
        reused by later puts, so copy whatever must outlive it. Raises :class:`KeyNotFound`.
        """
        with self._live().begin(buffers=True) as txn:
            value = txn.get(_key(key))
            if value is None:
                raise KeyNotFound(key)
            meta, buffers = _decode(value)
            # LMDB's memoryviews are read-only, so are the arrays made on them.
            yield pickle.loads(meta, buffers=[b.toreadonly() for b in buffers])

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there."""
        try:
            with self._live().begin(write=True) as txn:
                self._shared.reserve(0)
                return txn.delete(_key(key))
        except lmdb.Error as exc:
            raise StoreError(f"cannot delete {key!r}: {exc}") from exc

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._live().begin(buffers=True) as txn:
            return txn.get(_key(key)) is not None

    def keys(self) -> Iterator[str]:
        """Every key, in byte order, as of the call."""
        with self._live().begin() as txn:
            names = [k.decode() for k in txn.cursor().iternext(values=False)]
        return iter(names)

    def __len__(self) -> int:
        return self._live().stat()["entries"]

    def statistics(self) -> StoreStatistics:
        """Entries, bytes in use and capacity."""
        env = self._live()
        stat = env.stat()
        pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        return StoreStatistics(stat["entries"], pages * stat["psize"], env.info()["map_size"])

    def close(self) -> None:
        """Close the store (the files stay; see :func:`remove_store`). Idempotent."""
        if self._env is not None:
            self._env = None
            _release(self._real)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
