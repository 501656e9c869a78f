"""Raw iceoryx2 publish-subscribe between two processes: the baseline plexa's links are held to.

Run as ``python benchmarks/_raw.py producer|consumer CONFIG_JSON``; :mod:`benchmarks.links`
starts one consumer and one producer per measurement. The processes talk to the benchmark
through a small file of int64 slots (:class:`Ctl`): counts, ready flags and stop flags, so the
benchmark reads the raw consumer's ``received`` count exactly the way it reads plexa's link
counters.

Lossless modes (``lossless``):

* ``retry`` (default): ``enable_safe_overflow(False)`` +
  ``BackpressureStrategy.RetryUntilDelivered``, iceoryx2's own lossless mode: ``send()``
  waits inside iceoryx2 until the subscriber's queue has room. It is what a user writing
  plain iceoryx2 would pick and needs no extra code, and it was the faster of the two here
  (5-20 %), so it is the strictest fair baseline: the producer waits with no Python in the
  loop. (plexa cannot use it: the wait holds the GIL, so a blocked producer could not answer
  commands.)
* ``credit``: safe overflow plus a credit counter in shared memory and a wake-up event for the
  producer, which is the mechanism plexa's ``block`` policy uses, written by hand.

Both sides wake the same way plexa does: the producer notifies an event after every send;
the consumer, when its queue is empty, spins ``spin_s`` (50 us, as plexa) then blocks on a
Listener.
"""

from __future__ import annotations

import ctypes
import enum
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Ctl",
    "RawConfig",
    "Slot",
    "consume",
    "read_stamp",
    "stamp",
]


class Slot(enum.IntEnum):
    """The int64 slots of the control file; each has one writer."""

    RECEIVED = 0
    """Messages the consumer has handled (consumer)."""
    SENT = 1
    """Messages the producer has sent (producer)."""
    STOP_PRODUCER = 2
    """Set by the benchmark: the producer ends its loop."""
    STOP_CONSUMER = 3
    """Set by the benchmark once the producer has exited: the consumer drains and ends."""
    PRODUCER_READY = 4
    CONSUMER_READY = 5
    CONSUMED = 6
    """Messages the consumer has taken off the queue (credit mode; consumer)."""
    WAITING = 7
    """The producer waits for a credit and must be woken (credit mode)."""
    GO = 8
    """Set by the benchmark when both sides are ready: the producer starts sending."""
    LOST = 9
    """Messages missing from the sequence the consumer saw (consumer)."""
    FIRST_GAP = 10
    """Sequence number at which the first gap started, or -1 (consumer)."""
    PAUSE = 11
    """Set by the benchmark: the producer sends nothing while it is set."""


_SLOTS = 16


class Ctl:
    """The control file shared by the benchmark and the two raw processes."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        if create:
            self.array: npt.NDArray[np.int64] = np.memmap(path, np.int64, "w+", shape=(_SLOTS,))
        else:
            self.array = np.memmap(path, np.int64, "r+", shape=(_SLOTS,))

    def __getitem__(self, slot: Slot) -> int:
        return int(self.array[slot])

    def __setitem__(self, slot: Slot, value: int) -> None:
        self.array[slot] = value


@dataclass(frozen=True)
class RawConfig:
    """What one raw producer or consumer does (passed as JSON on the command line)."""

    prefix: str
    """iceoryx2 domain prefix (files in /dev/shm start with it)."""
    root: str
    """iceoryx2 root path (a directory under /tmp)."""
    ctl: str
    """Path of the control file."""
    shape: tuple[int, ...]
    """Shape of each message's array."""
    dtype: str
    """numpy dtype of each message's array."""
    capacity: int
    """Subscriber queue size (the link capacity)."""
    work: str = "ends"
    """Consumer work per message: ``ends``, ``sum``, ``mean`` or ``latency``."""
    rate_hz: float = 0.0
    """Producer send rate; 0 means as fast as the consumer takes them."""
    lossless: str = "retry"
    """``retry`` (iceoryx2 RetryUntilDelivered) or ``credit`` (see the module docstring)."""
    spin_s: float = 50e-6
    """Consumer spin before blocking, like plexa's runtime."""
    out: str = ""
    """Where the consumer saves its latency samples (``.npy``: rows of send time and
    latency, ns), in ``latency`` work."""
    max_samples: int = 100_000
    """Latency samples kept."""

    @property
    def nbytes(self) -> int:
        """Bytes of array data per message."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def to_json(self) -> str:
        """The config as one JSON argument."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RawConfig:
        """Read a config written by :meth:`to_json`."""
        data = json.loads(text)
        data["shape"] = tuple(data["shape"])
        return cls(**data)


def stamp(arr: npt.NDArray[Any], value: int) -> None:
    """Write ``value`` as a uint64 into the first 8 bytes of ``arr`` (C-contiguous)."""
    arr.reshape(-1).view(np.uint8)[:8].view(np.uint64)[0] = value


def read_stamp(arr: npt.NDArray[Any]) -> int:
    """Read the uint64 that :func:`stamp` wrote."""
    return int(arr.reshape(-1).view(np.uint8)[:8].view(np.uint64)[0])


def consume(arr: npt.NDArray[Any], work: str) -> Any:
    """The consumer's work on one message (the same function in raw and plexa consumers)."""
    if work == "sum":
        return arr.sum()
    if work == "mean":
        return arr.mean()
    flat = arr.reshape(-1)
    return int(flat[0]) + int(flat[-1])


def _iox() -> Any:
    import iceoryx2 as iox2

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    return iox2


def _node(iox2: Any, cfg: RawConfig, name: str) -> Any:
    config = iox2.config.default()
    config.global_cfg.prefix = iox2.FileName.new(cfg.prefix)
    config.global_cfg.root_path = iox2.Path.new(cfg.root.rstrip("/") + "/")
    return (
        iox2.NodeBuilder.new()
        .config(config)
        .name(iox2.NodeName.new(name))
        .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
        .create(iox2.ServiceType.Ipc)
    )


def _data_service(iox2: Any, node: Any, cfg: RawConfig) -> Any:
    return (
        node.service_builder(iox2.ServiceName.new("bench/data"))
        .publish_subscribe(iox2.Slice[ctypes.c_uint8])
        .enable_safe_overflow(cfg.lossless != "retry")
        .history_size(0)
        .subscriber_max_buffer_size(cfg.capacity)
        .subscriber_max_borrowed_samples(2)
        .max_subscribers(1)
        .max_publishers(1)
        .max_nodes(3)
        .open_or_create()
    )


def _event(iox2: Any, node: Any, name: str) -> Any:
    return (
        node.service_builder(iox2.ServiceName.new(name))
        .event()
        .max_notifiers(2)
        .max_listeners(1)
        .max_nodes(3)
        .open_or_create()
    )


def _view(sample: Any, nbytes: int, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Any:
    buf = (ctypes.c_uint8 * nbytes).from_address(sample.payload_ptr)
    flat = np.frombuffer(buf, dtype, nbytes // dtype.itemsize)  # type: ignore[call-overload]
    return flat.reshape(shape)


def run_producer(cfg: RawConfig) -> None:
    """Send frames until told to stop: loan, fill, (stamp), send, notify."""
    iox2 = _iox()
    ctl = Ctl(Path(cfg.ctl))
    node = _node(iox2, cfg, "producer")
    service = _data_service(iox2, node, cfg)
    builder = service.publisher_builder().initial_max_slice_len(cfg.nbytes).max_loaned_samples(2)
    if cfg.lossless == "retry":
        builder = builder.backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
    publisher = builder.create()
    notifier = _event(iox2, node, "bench/wake").notifier_builder().create()
    room = None
    if cfg.lossless == "credit":
        room = _event(iox2, node, "bench/room").listener_builder().create()
    dtype = np.dtype(cfg.dtype)
    source = np.arange(int(np.prod(cfg.shape)), dtype=dtype).reshape(cfg.shape)
    period = 1.0 / cfg.rate_hz if cfg.rate_hz > 0 else 0.0
    block = iox2.Duration.from_secs_f64(0.05)
    # With RetryUntilDelivered, a publisher that sends right after it was created sometimes
    # loses one contiguous run of samples starting when the subscriber's queue first fills
    # (seen here in about a third of the runs, 18 to 2127 samples lost from seq = capacity);
    # after a short pause it never did. Warm-up is not measured, so the pause costs nothing.
    time.sleep(0.3)
    ctl[Slot.PRODUCER_READY] = 1
    while not ctl[Slot.GO] and not ctl[Slot.STOP_PRODUCER]:
        time.sleep(0.001)
    sent = 0
    due = time.monotonic()
    while not ctl[Slot.STOP_PRODUCER]:
        if ctl[Slot.PAUSE]:
            time.sleep(0.001)
            due = time.monotonic()  # no burst to catch up after a pause
            continue
        if period:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            due = max(due + period, time.monotonic() - period)
        if room is not None:
            while sent - ctl[Slot.CONSUMED] >= cfg.capacity and not ctl[Slot.STOP_PRODUCER]:
                ctl[Slot.WAITING] = 1
                if sent - ctl[Slot.CONSUMED] >= cfg.capacity:
                    room.timed_wait(block)
                ctl[Slot.WAITING] = 0
        sample = publisher.loan_slice_uninit(cfg.nbytes)
        view = _view(sample, cfg.nbytes, dtype, cfg.shape)
        np.copyto(view, source)
        stamp(view, time.monotonic_ns() if cfg.work == "latency" else sent)
        sample.assume_init().send()
        notifier.notify()
        sent += 1
        ctl[Slot.SENT] = sent
    notifier.notify()
    for port in (room, notifier, publisher):
        if port is not None:
            port.delete()
    del node


def run_consumer(cfg: RawConfig) -> None:
    """Take messages and do ``cfg.work`` on each until told to stop, then save samples."""
    iox2 = _iox()
    ctl = Ctl(Path(cfg.ctl))
    node = _node(iox2, cfg, "consumer")
    service = _data_service(iox2, node, cfg)
    subscriber = service.subscriber_builder().buffer_size(cfg.capacity).create()
    listener = _event(iox2, node, "bench/wake").listener_builder().create()
    room = None
    if cfg.lossless == "credit":
        room = _event(iox2, node, "bench/room").notifier_builder().create()
    dtype = np.dtype(cfg.dtype)
    nbytes, shape, work, spin = cfg.nbytes, cfg.shape, cfg.work, cfg.spin_s
    latency = work == "latency"
    samples = np.zeros((cfg.max_samples if latency else 1, 2), np.int64)
    block = iox2.Duration.from_secs_f64(0.1)
    received = expected = 0
    ctl[Slot.FIRST_GAP] = -1
    ctl[Slot.CONSUMER_READY] = 1
    while True:
        sample = subscriber.receive()
        if sample is None:
            if ctl[Slot.STOP_CONSUMER]:
                break
            end = time.perf_counter() + spin
            while time.perf_counter() < end:
                if subscriber.has_samples():
                    break
            else:
                listener.timed_wait(block)
            continue
        if room is not None:
            ctl[Slot.CONSUMED] = received + 1
            if ctl[Slot.WAITING]:
                ctl[Slot.WAITING] = 0
                room.notify()
        view = _view(sample, nbytes, dtype, shape)
        if latency:
            if received < len(samples):
                now = time.monotonic_ns()
                sent_at = read_stamp(view)
                samples[received] = sent_at, now - sent_at
        else:
            seq = read_stamp(view)
            if seq != expected:
                if ctl[Slot.FIRST_GAP] < 0:
                    ctl[Slot.FIRST_GAP] = expected
                ctl[Slot.LOST] = ctl[Slot.LOST] + seq - expected
            expected = seq + 1
            consume(view, work)
        del view
        sample.delete()
        received += 1
        ctl[Slot.RECEIVED] = received
    if latency and cfg.out:
        np.save(cfg.out, samples[: min(received, len(samples))])
    for port in (room, listener, subscriber):
        if port is not None:
            port.delete()
    del node


def main(argv: list[str]) -> int:
    """``_raw.py producer|consumer CONFIG_JSON``."""
    role, text = argv[0], argv[1]
    cfg = RawConfig.from_json(text)
    if role == "producer":
        run_producer(cfg)
    elif role == "consumer":
        run_consumer(cfg)
    else:
        print(f"unknown role {role!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("IOX2_LOG_LEVEL", "Error")
    sys.exit(main(sys.argv[1:]))
