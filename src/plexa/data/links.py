"""The local data plane: links between actors over iceoryx2 zero-copy publish-subscribe.

One iceoryx2 service per output port (``plexa/ACTOR/PORT``), one publisher on it (the
:class:`OutputPort` here), one subscriber per link (:mod:`plexa.data.inputs`). After each
send the producer notifies its consumers' wake-up services (:mod:`plexa.data.domain`, where
the services, the sample header and the wake-ups are), so one blocking wait covers all.

``block`` is implemented with credits read from the shared counters rather than iceoryx2's
blocking send, which holds the GIL (a blocked producer could not even answer a command).
The services always run with safe overflow, so a ``block`` link that ever overflows shows up
as ``lost`` instead of hanging.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import iceoryx2 as iox2
import numpy as np
import numpy.typing as npt

from plexa.core.paths import SHM_ROOT
from plexa.core.spec import LinkSpec, Policy
from plexa.data import payload
from plexa.data.counters import Counters, LinkField, OutputField
from plexa.data.domain import (
    LAYOUT,
    MAX_BORROWED,
    META_LEN,
    SEQ,
    SPARE_SUBSCRIBERS,
    T_NS,
    Wake,
    Words,
)
from plexa.errors import (
    LinkBroken,
    OutOfSharedMemory,
    PayloadError,
    Timeout,
    WouldBlock,
)

__all__ = ["LinkStatistics", "Loan", "OutputPort"]

SAMPLE_MASK = 7
"""Latency and handler time are measured on one message (or step) in 8: the percentiles
stay representative and the per-message cost small. Counts are always exact."""

_log = logging.getLogger("plexa.links")

_INITIAL_SLICE = 64 * 1024


_SHM_MARGIN = 1 << 20
_SHM_TRUSTED = 64 << 20
"""With this much of /dev/shm free beyond a message's slot, loans skip the free-space check
(a ``statvfs``, ~2 µs: 5 % of a 100 B message) for :data:`_SHM_TRUST_S`."""
_SHM_TRUST_S = 0.1
_MADV_POPULATE_WRITE = 23  # Linux 5.14
_PAGE = os.sysconf("SC_PAGE_SIZE")
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.madvise.restype = ctypes.c_int


def shm_free() -> int | None:
    """Bytes free in /dev/shm (None if it cannot be told)."""
    try:
        vfs = os.statvfs(SHM_ROOT)
    except OSError:
        return None
    return vfs.f_bavail * vfs.f_frsize


def populate(addr: int, length: int) -> bool:
    """Back the shared pages in ``[addr, addr + length)`` with memory now, without changing
    their content; False if there is no memory for them (where touching them would have
    been SIGBUS). Kernels before 5.14 cannot do this: free space is checked instead."""
    start = addr - addr % _PAGE
    while True:
        if _libc.madvise(start, addr + length - start, _MADV_POPULATE_WRITE) == 0:
            return True
        err = ctypes.get_errno()
        if err in (errno.EINTR, errno.EAGAIN):
            continue
        if err == errno.EINVAL:  # no MADV_POPULATE_WRITE here
            free = shm_free()
            return free is None or free >= length + _SHM_MARGIN
        return False  # EFAULT, ENOMEM: no memory to back them


def slot_size(size: int) -> int:
    """The sample size loaned for a message of ``size`` bytes.

    A publisher's samples grow to the largest message sent (iceoryx2's best-fit allocation,
    a new shared-memory segment each time). Sizes above the initial 64 KB are rounded up to
    a sixteenth of their power of two, so a stream of growing messages reallocates a few
    times per doubling, and a stream of equal frames wastes at most 1/16 of each.
    """
    if size <= _INITIAL_SLICE:
        return size
    step = 1 << (size.bit_length() - 4)
    return -(-size // step) * step


@dataclass(frozen=True)
class LinkStatistics:
    """Counts of one link, as its consumer sees them."""

    sent: int
    received: int
    dropped: int
    lost: int


IdleWait = Callable[[float], None]
"""Waits up to the given seconds for a wake-up, applying pending signals (a safe point)."""


class OutputPort:
    """An output port: ``put(obj)`` sends to every linked input.

    With a ``block`` link, ``put`` waits for room (a safe point: signals apply meanwhile);
    ``put_nowait`` raises :class:`WouldBlock` instead.
    """

    def __init__(
        self,
        name: str,
        actor: str,
        links: list[LinkSpec],
        service: Any,
        counters: Counters,
        wake: Wake,
        idle_wait: IdleWait,
    ) -> None:
        self.name = name
        self.actor = actor
        self._publisher = (
            service.publisher_builder()
            .initial_max_slice_len(_INITIAL_SLICE)
            .allocation_strategy(iox2.AllocationStrategy.BestFit)
            .max_loaned_samples(2)
            .create()
        )
        self._row = counters.output_row(f"{actor}.{name}")
        self._blocking = [
            (counters.link_row(link.name), link.capacity, wake.notifier(link.dst))
            for link in links
            if link.policy is Policy.BLOCK
        ]
        self._notifiers = list({link.dst: wake.notifier(link.dst) for link in links}.values())
        self._wake = wake
        self._idle_wait = idle_wait
        self._layouts: dict[tuple[Any, Any], FrameLayout] = {}
        self.sent = int(self._row[OutputField.SENT])
        self._backed: dict[int, int] = {}
        """Sample address -> bytes of it known to be backed by memory (see :meth:`_back`)."""
        self._largest = _INITIAL_SLICE
        self._trusted_until = 0.0
        """Until when /dev/shm is known to have room to spare (see :meth:`_check_room`)."""
        self._slots = (len(links) + SPARE_SUBSCRIBERS) * (
            max((lk.capacity for lk in links), default=1) + MAX_BORROWED
        ) + 2
        """Samples the publisher's segment holds (see Domain.output_service)."""

    def _room(self) -> bool:
        """True if every ``block`` link has room for one more message; if one has not, ask
        its consumer (``WAITING``) to wake this producer once it takes a message.

        Waking later, at half the queue, saves the consumer notify calls but was measured
        to starve it: a producer takes ~100-150 us to wake here, about one frame's handling.
        """
        sent = self.sent
        for row, capacity, _ in self._blocking:
            if row[LinkField.DETACHED]:
                continue
            if row[LinkField.HOLD]:
                row[LinkField.WAITING] = 1
                return False
            if sent - int(row[LinkField.CONSUMED]) >= capacity:
                row[LinkField.WAITING] = 1
                if sent - int(row[LinkField.CONSUMED]) >= capacity:  # not taken meanwhile
                    return False
                row[LinkField.WAITING] = 0
        return True

    def _wait_room(self, timeout: float | None) -> None:
        if not self._blocking or self._room():
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._room():
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                raise Timeout(f"output {self.actor}.{self.name}: no room within {timeout} s")
            self._idle_wait(left)

    def _loan(self, size: int, layout: int, meta_len: int) -> Any:
        """A sample of at least ``size`` bytes whose header already says what it holds."""
        slot = slot_size(size)
        if slot > self._largest or len(self._backed) < self._slots:
            self._check_room(slot, size)  # samples not yet backed by memory may come
        try:
            sample = self._publisher.loan_slice_uninit(slot)
        except Exception as exc:
            raise LinkBroken(
                f"output {self.actor}.{self.name}: cannot loan {size} bytes: {exc}"
            ) from exc
        if self._backed.get(sample.payload_ptr, 0) < slot:
            self._back(sample, slot, size)
        header = Words.from_address(sample.user_header_ptr)
        header[LAYOUT] = layout
        header[META_LEN] = meta_len
        return sample

    def _check_room(self, slot: int, size: int) -> None:
        """Refuse a message that could need more of /dev/shm than is free (the sample's
        header is written by iceoryx2 itself, on pages this process cannot back first).

        Asked on every loan while samples may come that were never backed, which for most
        links is always (a few samples of the pool take turns); after a look that found
        :data:`_SHM_TRUSTED` to spare, the next :data:`_SHM_TRUST_S` of loans do not look."""
        now = time.monotonic()
        if slot > self._largest:  # the publisher moves to a new segment: new addresses
            self._largest = slot
            self._backed.clear()
        elif now < self._trusted_until:
            return
        free = shm_free()
        if free is not None and free < slot + _SHM_MARGIN:
            raise OutOfSharedMemory(
                f"output {self.actor}.{self.name}: no room in /dev/shm for a message of "
                f"{size} bytes ({free} bytes free); nothing was sent"
            )
        plenty = free is None or free >= slot + _SHM_TRUSTED
        self._trusted_until = now + _SHM_TRUST_S if plenty else 0.0

    def _back(self, sample: Any, slot: int, size: int) -> None:
        """Have the kernel back the pages of a sample used for the first time at this size,
        so that writing into it can never be SIGBUS; refuse the message if it cannot."""
        ptr = sample.payload_ptr
        start = min(ptr, sample.user_header_ptr)
        if not populate(start, ptr + slot - start):
            sample.delete()
            raise OutOfSharedMemory(
                f"output {self.actor}.{self.name}: no room in /dev/shm for a message of "
                f"{size} bytes; nothing was sent"
            )
        self._backed[ptr] = slot

    def _send(self, sample: Any, nbytes: int) -> None:
        """Number the sample, count it as sent (before a consumer can take it, so no reader
        sees more taken than sent), send it, wake the consumers, then the rest."""
        sent = self.sent
        header = Words.from_address(sample.user_header_ptr)
        header[SEQ] = sent
        header[T_NS] = time.monotonic_ns()  # every message: a recorder keeps its send time
        row = self._row
        row[OutputField.SENT] = self.sent = sent + 1
        sample.assume_init().send()
        for notifier in self._notifiers:
            notifier.notify()
        if row[OutputField.TAPS]:
            self._wake.tap()
        row[OutputField.BYTES] += nbytes

    def put(self, obj: object, timeout: float | None = None) -> None:
        """Send ``obj`` to every linked input, waiting for room on ``block`` links."""
        self._wait_room(timeout)
        self._put(obj)

    def put_nowait(self, obj: object) -> None:
        """Send ``obj`` now, or raise :class:`WouldBlock` if a ``block`` link is full."""
        if self._blocking and not self._room():
            raise WouldBlock(f"output {self.actor}.{self.name} is full")
        self._put(obj)

    def _put(self, obj: object) -> None:
        try:
            enc = payload.encode(obj)
        except Exception as exc:  # nothing was loaned or counted yet
            raise PayloadError(
                f"output {self.actor}.{self.name}: cannot send {type(obj).__name__}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        sample = self._loan(enc.nbytes, enc.layout, len(enc.meta))
        payload.write(enc, sample.payload_ptr, enc.nbytes)
        self._send(sample, enc.nbytes)

    def loan(
        self, shape: tuple[int, ...] | list[int] | int, dtype: npt.DTypeLike = np.uint8
    ) -> Loan:
        """Write a frame straight into shared memory; it is sent when the block ends.

        ``with self.outputs.frames.loan((512, 512), np.uint16) as frame: frame[:] = ...``.
        If the block raises, nothing is sent.
        """
        if not isinstance(shape, tuple | int):
            shape = tuple(shape)  # a list, say: the cache needs a hashable key
        layout = self._layouts.get((shape, dtype))
        if layout is None:  # computed once per (shape, dtype): this is the per-frame path
            dims = (shape,) if isinstance(shape, int) else shape
            dt = np.dtype(dtype)
            if dt.subdtype is not None:  # ("f4", (3,)): numpy makes that three more f4s
                dt, sub = dt.subdtype
                dims = (*dims, *sub)
            try:
                meta = payload.array_meta(dims, dt)
            except PayloadError as exc:
                raise PayloadError(f"output {self.actor}.{self.name}: cannot loan: {exc}") from None
            size = len(meta) + math.prod(dims) * dt.itemsize + payload.ALIGN
            layout = FrameLayout(dims, dt, meta, payload.layout_key(meta), size)
            self._layouts[(shape, dtype)] = layout
        return Loan(self, layout)

    def close(self) -> None:
        """Release the publisher."""
        self._publisher.delete()


class FrameLayout(NamedTuple):
    """How a loaned frame of one shape and dtype lies in its sample."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    meta: bytes
    """The array descriptor written before the data."""
    key: int
    """The descriptor's layout key (see :mod:`plexa.data.payload`)."""
    size: int
    """Bytes to loan: descriptor, alignment padding, data."""


class Loan:
    """A frame being written in place (``with port.loan(shape, dtype) as frame``)."""

    __slots__ = ("_layout", "_port", "_sample")

    def __init__(self, port: OutputPort, layout: FrameLayout) -> None:
        self._port = port
        self._layout = layout
        self._sample: Any = None

    def __enter__(self) -> npt.NDArray[Any]:
        port = self._port
        port._wait_room(None)
        shape, dtype, meta, key, size = self._layout
        sample = self._sample = port._loan(size, key, len(meta))
        ptr = sample.payload_ptr
        ctypes.memmove(ptr, meta, len(meta))
        buf = (ctypes.c_uint8 * size).from_address(ptr)
        offset = payload.data_offset(ptr, len(meta))
        return np.ndarray(shape, dtype, buf, offset)  # type: ignore[arg-type]

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        sample, self._sample = self._sample, None
        if exc_type is None:
            self._port._send(sample, self._layout.size)
        else:
            sample.delete()
