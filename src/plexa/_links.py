"""The local data plane: links between actors over iceoryx2 zero-copy publish-subscribe.

One iceoryx2 service per output port (``plexa/ACTOR/PORT``), one publisher on it, one
subscriber per link. Every actor also owns a wake-up event service (``plexa/ACTOR/wake``)
that producers notify after sending, consumers notify after freeing room on a ``block`` link,
and the actor's control thread notifies when a command arrives: one blocking wait covers all.

``block`` is implemented with credits read from the shared counters rather than iceoryx2's
blocking send, which holds the GIL (a blocked producer could not even answer a command).
The services always run with safe overflow, so a ``block`` link that ever overflows shows up
as ``lost`` instead of hanging.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import iceoryx2 as iox2
import numpy as np
import numpy.typing as npt

from plexa import _payload
from plexa._counters import HIST_BASE, HIST_BUCKETS, ActorField, Counters, LinkField, OutputField
from plexa._paths import RunPaths
from plexa._spec import LinkSpec, PipelineSpec, Policy
from plexa.errors import LinkBroken, PlexaError, Timeout, WouldBlock

__all__ = ["Domain", "InputPort", "LinkStatistics", "OutputPort", "Wake"]

HIST_LAST = HIST_BUCKETS - 1

iox2.set_log_level_from_env_or(iox2.LogLevel.Error)

MAX_BORROWED = 4
"""Messages a consumer may hold at once per link (the handler's plus a few kept views)."""
_INITIAL_SLICE = 64 * 1024


class Header(ctypes.Structure):
    """The user header of every sample."""

    _fields_ = (
        ("seq", ctypes.c_uint64),
        ("t_ns", ctypes.c_uint64),
        ("kind", ctypes.c_uint32),
        ("meta_len", ctypes.c_uint32),
    )


@dataclass(frozen=True)
class LinkStatistics:
    """Counts of one link, as its consumer sees them."""

    sent: int
    received: int
    dropped: int
    lost: int


class Domain:
    """This process's iceoryx2 node in the run's private domain.

    Each run has its own prefix and root path, so nothing here can touch another run's
    files, and removing a run's traces means removing its domain.
    """

    def __init__(self, paths: RunPaths, node_name: str) -> None:
        cfg = iox2.config.default()
        cfg.global_cfg.prefix = iox2.FileName.new(paths.iox_prefix)
        cfg.global_cfg.root_path = iox2.Path.new(str(paths.iox_root) + "/")
        self.config = cfg
        self.node = (
            iox2.NodeBuilder.new()
            .config(cfg)
            .name(iox2.NodeName.new(node_name))
            .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
            .create(iox2.ServiceType.Ipc)
        )

    def output_service(self, spec: PipelineSpec, output: str) -> Any:
        """Open (or create) the service behind output port ``SRC.port``, sized from the spec."""
        links = [link for link in spec.links if link.output == output]
        capacity = max((link.capacity for link in links), default=1)
        return (
            self.node.service_builder(iox2.ServiceName.new("plexa/" + output.replace(".", "/")))
            .publish_subscribe(iox2.Slice[ctypes.c_uint8])
            .user_header(Header)
            .enable_safe_overflow(True)
            .history_size(0)
            .subscriber_max_buffer_size(capacity)
            .subscriber_max_borrowed_samples(MAX_BORROWED)
            .max_subscribers(2 * len(links) + 1)
            .max_publishers(2)
            .max_nodes(2 * len(links) + 4)
            .open_or_create()
        )

    def wake_service(self, spec: PipelineSpec, actor: str) -> Any:
        """Open (or create) actor ``actor``'s wake-up event service."""
        return (
            self.node.service_builder(iox2.ServiceName.new(f"plexa/{actor}/wake"))
            .event()
            .max_notifiers(2 * len(spec.actors) + 4)
            .max_listeners(2)
            .max_nodes(2 * len(spec.actors) + 4)
            .open_or_create()
        )

    def cleanup_dead_nodes(self) -> int:
        """Remove what dead processes of this domain left (and release their ports)."""
        count = 0
        for view in iox2.Node.list(iox2.ServiceType.Ipc, self.config):
            if isinstance(view, iox2.DeadNodeView):
                try:
                    if view.try_remove_stale_resources():
                        count += 1
                except Exception:  # another process may be cleaning the same node
                    continue
        return count

    def close(self) -> None:
        """Release the node; iceoryx2 removes files no remaining node uses."""
        self.node = None


class Wake:
    """This actor's wake-up listener plus notifiers to other actors' listeners."""

    def __init__(self, domain: Domain, spec: PipelineSpec, actor: str) -> None:
        self._domain = domain
        self._spec = spec
        self.listener = domain.wake_service(spec, actor).listener_builder().create()
        self._notifiers: dict[str, Any] = {}

    def notifier(self, actor: str) -> Any:
        """A notifier that wakes ``actor``."""
        found = self._notifiers.get(actor)
        if found is None:
            found = self._domain.wake_service(self._spec, actor).notifier_builder().create()
            self._notifiers[actor] = found
        return found

    def wait(self, timeout: float) -> bool:
        """Block until woken or ``timeout`` seconds pass (the GIL is released meanwhile)."""
        try:
            woken = self.listener.timed_wait(iox2.Duration.from_secs_f64(max(timeout, 0.0)))
        except iox2.ListenerWaitError:  # interrupted by a signal (SIGSTOP/SIGCONT, ...)
            return False
        return bool(woken)

    def clear(self) -> None:
        """Forget wake-ups already delivered."""
        while self.listener.try_wait():
            pass

    def close(self) -> None:
        """Release the listener and notifiers."""
        for notifier in self._notifiers.values():
            notifier.delete()
        self._notifiers.clear()
        self.listener.delete()


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
            .allocation_strategy(iox2.AllocationStrategy.PowerOfTwo)
            .max_loaned_samples(2)
            .create()
        )
        self._row = counters.output_row(f"{actor}.{name}")
        self._actor_row = counters.actor_row(actor)
        self._blocking = [
            (counters.link_row(link.name), link.capacity, wake.notifier(link.dst))
            for link in links
            if link.policy is Policy.BLOCK
        ]
        self._notifiers = list({link.dst: wake.notifier(link.dst) for link in links}.values())
        self._idle_wait = idle_wait
        self._layouts: dict[tuple[Any, Any], tuple[np.dtype[Any], int, bytes, int]] = {}
        self.sent = int(self._row[OutputField.SENT])

    def _room(self) -> bool:
        sent = self.sent
        for row, capacity, _ in self._blocking:
            if row[LinkField.DETACHED]:
                continue
            if row[LinkField.HOLD]:
                row[LinkField.WAITING] = 1
                return False
            if sent - int(row[LinkField.CONSUMED]) >= capacity:
                row[LinkField.WAITING] = 1
                if sent - int(row[LinkField.CONSUMED]) >= capacity:
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

    def _loan(self, size: int) -> Any:
        try:
            return self._publisher.loan_slice_uninit(size)
        except Exception as exc:
            raise LinkBroken(
                f"output {self.actor}.{self.name}: cannot loan {size} bytes: {exc}"
            ) from exc

    def _send(self, sample: Any, kind: int, meta_len: int, nbytes: int) -> None:
        header = Header.from_address(sample.user_header_ptr)
        header.seq = self.sent
        header.t_ns = time.monotonic_ns()
        header.kind = kind
        header.meta_len = meta_len
        sample.assume_init().send()
        self.sent += 1
        row = self._row
        row[OutputField.SENT] = self.sent
        row[OutputField.BYTES] += nbytes
        self._actor_row[ActorField.MSGS_OUT] += 1
        for notifier in self._notifiers:
            notifier.notify()

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
        enc = _payload.encode(obj)
        sample = self._loan(enc.nbytes)
        _payload.write(enc, sample.payload_ptr, enc.nbytes)
        self._send(sample, enc.kind, len(enc.meta), enc.nbytes)

    @contextmanager
    def loan(
        self, shape: tuple[int, ...] | int, dtype: npt.DTypeLike = np.uint8
    ) -> Iterator[npt.NDArray[Any]]:
        """Write a frame straight into shared memory; it is sent when the block ends.

        ``with self.outputs.frames.loan((512, 512), np.uint16) as frame: frame[:] = ...``.
        If the block raises, nothing is sent.
        """
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        layout = self._layouts.get((shape, dtype))
        if layout is None:  # computed once per (shape, dtype): this is the per-frame path
            dt = np.dtype(dtype)
            count = math.prod(shape)
            layout = (dt, count, _payload.array_meta(shape, dt), count * dt.itemsize)
            self._layouts[(shape, dtype)] = layout
        dt, count, meta, nbytes = layout
        self._wait_room(None)
        size = len(meta) + nbytes + 64
        sample = self._loan(size)
        ptr = sample.payload_ptr
        raw = (ctypes.c_uint8 * size).from_address(ptr)
        memoryview(raw).cast("B")[: len(meta)] = meta
        offset = _payload.data_offset(ptr, len(meta))
        flat = np.frombuffer(raw, dt, count, offset)  # type: ignore[call-overload]
        array: npt.NDArray[Any] = flat.reshape(shape)
        try:
            yield array
        except BaseException:
            sample.delete()
            raise
        self._send(sample, _payload.ARRAY, len(meta), size)

    def close(self) -> None:
        """Release the publisher."""
        self._publisher.delete()


class _Sub:
    """One link as its consumer holds it."""

    __slots__ = (
        "capacity",
        "link",
        "metrics",
        "notifier",
        "out_row",
        "policy",
        "row",
        "subscriber",
    )

    def __init__(
        self, link: LinkSpec, service: Any, counters: Counters, notifier: Any | None
    ) -> None:
        self.link = link
        self.policy = link.policy
        self.capacity = link.capacity
        self.subscriber = service.subscriber_builder().buffer_size(link.capacity).create()
        self.row = counters.link_row(link.name)
        self.out_row = counters.output_row(link.output)
        self.notifier = notifier
        self.metrics = True

    def receive(self) -> Any:
        try:
            return self.subscriber.receive()
        except Exception as exc:
            raise PlexaError(
                f"link {self.link.name}: cannot take another message ({exc}); handlers may "
                f"keep at most {MAX_BORROWED - 1} received arrays alive: call .copy() on "
                "the ones you keep"
            ) from exc

    def take(self) -> Any:
        """The next message's sample, with its accounting done, or None."""
        sample = self.receive()
        if sample is None:
            return None
        if self.policy is Policy.LATEST:
            while self.subscriber.has_samples():  # keep only the newest, holding one at a time
                self._account(sample, dropped_after=True)
                del sample
                sample = self.receive()
                if sample is None:
                    return None
        self._account(sample)
        return sample

    def _account(self, sample: Any, dropped_after: bool = False) -> None:
        row = self.row
        header = Header.from_address(sample.user_header_ptr)
        seq = header.seq
        expected = int(row[LinkField.CONSUMED])
        if seq > expected:
            field = LinkField.LOST if self.policy is Policy.BLOCK else LinkField.DROPPED
            row[field] += seq - expected
        row[LinkField.CONSUMED] = seq + 1
        if dropped_after:
            row[LinkField.DROPPED] += 1
        else:
            row[LinkField.RECEIVED] += 1
            if self.metrics and not seq & 7:  # one message in 8: see _runtime.SAMPLE_MASK
                latency = time.monotonic_ns() - header.t_ns
                row[LinkField.LATENCY_NS] = latency
                row[HIST_BASE + min(HIST_LAST, max(latency, 0).__rshift__(10).bit_length())] += 1
        if self.notifier is not None and row[LinkField.WAITING]:
            row[LinkField.WAITING] = 0
            self.notifier.notify()

    def close(self) -> None:
        self.subscriber.delete()


class InputPort:
    """An input port fed by one or more links (fan-in); messages are taken round-robin."""

    def __init__(
        self, name: str, actor: str, subs: list[_Sub], counters: Counters, idle_wait: IdleWait
    ) -> None:
        self.name = name
        self.actor = actor
        self._subs = subs
        self._next = 0
        self._actor_row = counters.actor_row(actor)
        self._idle_wait = idle_wait

    def take_sample(self) -> Any:
        """The next sample from any link of this port, or None."""
        subs = self._subs
        n = len(subs)
        for i in range(n):
            sub = subs[(self._next + i) % n]
            sample = sub.take()
            if sample is not None:
                self._next = (self._next + i + 1) % n
                self._actor_row[ActorField.MSGS_IN] += 1
                return sample
        return None

    def discard(self) -> int:
        """Drop every queued message, counting each as dropped; returns how many."""
        count = 0
        for sub in self._subs:
            while True:
                sample = sub.receive()
                if sample is None:
                    break
                sub._account(sample, dropped_after=True)
                count += 1
        return count

    def has_pending(self) -> bool:
        """True when a message waits on some link of this port."""
        return any(sub.subscriber.has_samples() for sub in self._subs)

    def get_nowait(self) -> Any:
        """The next message, or :class:`WouldBlock` if none is queued."""
        sample = self.take_sample()
        if sample is None:
            raise WouldBlock(f"input {self.actor}.{self.name} is empty")
        return decode_sample(sample)

    def get(self, timeout: float | None = None) -> Any:
        """The next message, waiting up to ``timeout`` seconds (None: forever).

        Waiting is a safe point: a pause blocks here, a stop ends the step.
        Raises :class:`plexa.Timeout` when nothing came in time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sample = self.take_sample()
            if sample is not None:
                return decode_sample(sample)
            left = 0.1 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"input {self.actor}.{self.name}: nothing within {timeout} s")
            self._idle_wait(min(left, 0.1))

    def statistics(self) -> dict[str, LinkStatistics]:
        """Per-link counts."""
        return {
            sub.link.name: LinkStatistics(
                sent=int(sub.out_row[OutputField.SENT]),
                received=int(sub.row[LinkField.RECEIVED]),
                dropped=int(sub.row[LinkField.DROPPED]),
                lost=int(sub.row[LinkField.LOST]),
            )
            for sub in self._subs
        }

    def close(self) -> None:
        """Release the subscribers."""
        for sub in self._subs:
            sub.close()


def decode_sample(sample: Any) -> Any:
    """The message in ``sample`` as a Python object (arrays as read-only shared views)."""
    header = Header.from_address(sample.user_header_ptr)
    return _payload.decode(
        header.kind,
        header.meta_len,
        sample.payload_ptr,
        sample.header.number_of_elements,
        sample,
    )


def make_sub(
    link: LinkSpec, domain: Domain, spec: PipelineSpec, counters: Counters, wake: Wake
) -> _Sub:
    """The consumer's end of ``link``."""
    notifier = wake.notifier(link.src) if link.policy is Policy.BLOCK else None
    sub = _Sub(link, domain.output_service(spec, link.output), counters, notifier)
    sub.metrics = spec.settings.metrics
    if sub.row[LinkField.HOLD]:  # we replace a consumer that died: let the producer go on
        sub.row[LinkField.HOLD] = 0
        if notifier is not None:
            notifier.notify()
    return sub
