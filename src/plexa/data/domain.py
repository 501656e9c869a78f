"""The run's iceoryx2 domain: its services, the header of every sample, and the wake-ups.

Every process of a run opens one node in the run's private domain (:class:`Domain`): one
publish-subscribe service per output port (``plexa/ACTOR/PORT``, :mod:`plexa.data.links`
publishes and :mod:`plexa.data.inputs` subscribes), one wake-up event service per actor
(``plexa/ACTOR/wake``, :class:`Wake`: producers notify it after sending, consumers after
freeing room on a ``block`` link, the control thread when a command arrives), and one for
the run's recorder taps (``plexa/taps/wake``).
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from typing import Any

import iceoryx2 as iox2

from plexa.core.paths import RunPaths
from plexa.core.spec import PipelineSpec

__all__ = [
    "LAYOUT",
    "MAX_BORROWED",
    "META_LEN",
    "SEQ",
    "SPARE_SUBSCRIBERS",
    "T_NS",
    "Domain",
    "Header",
    "Wake",
    "Words",
    "listen",
]

iox2.set_log_level_from_env_or(iox2.LogLevel.Error)

MAX_BORROWED = 4
"""Messages a consumer may hold at once per link (the handler's plus a few kept views)."""
SPARE_SUBSCRIBERS = 2
"""Subscribers an output's service takes beyond its links: a restarted consumer's new port
(before the dead one is reclaimed) and a tap (``plexa peek``, a recorder started live)."""
_TAP_NOTIFIERS = 256
"""Processes that may wake a run's recorder for its taps."""


MIN_WAIT_S = 1e-5
"""The shortest blocking wait asked of iceoryx2: its ``timed_wait`` takes a duration under a
microsecond for no timeout at all, and blocks until a notification (measured on 0.10.0: a
wait of 0 or 1 ns never returned; one of 1 µs returned after its ~8 ms tick)."""


def listen(listener: Any, timeout: float) -> bool:
    """Wait on an iceoryx2 ``listener`` until notified or ``timeout`` seconds pass (none: look
    once); True if notified. A signal that interrupts the wait ends it (False)."""
    try:
        if timeout <= 0:
            return bool(listener.try_wait())
        return bool(listener.timed_wait(iox2.Duration.from_secs_f64(max(timeout, MIN_WAIT_S))))
    except iox2.ListenerWaitError:  # interrupted by a signal (SIGSTOP/SIGCONT, ...)
        return False


class Header(ctypes.Structure):
    """The user header of every sample (the service's declared type)."""

    _fields_ = (
        ("seq", ctypes.c_uint64),
        ("t_ns", ctypes.c_uint64),
        ("layout", ctypes.c_uint64),
        ("meta_len", ctypes.c_uint64),
    )


Words = ctypes.c_uint64 * 4
"""How the header is read and written: the same bytes as :class:`Header`, through the
ctypes array code that the counters use too (fewer cold code paths after a wake-up)."""
SEQ, T_NS, LAYOUT, META_LEN = range(4)


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
        """Open (or create) the service behind output port ``SRC.port``, sized from the spec.

        Its shared memory holds, per subscriber, ``capacity`` queued plus ``MAX_BORROWED``
        held samples, each as large as the largest message (see :func:`slot_size`).
        """
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
            .max_subscribers(len(links) + SPARE_SUBSCRIBERS)
            .max_publishers(2)
            .max_nodes(2 * len(links) + 4)
            .open_or_create()
        )

    def tap_wake_service(self) -> Any:
        """Open (or create) the run's tap wake-up event service: producers of tapped outputs
        notify it, the recorder listens (sized for any run, so every process opens it alike)."""
        return (
            self.node.service_builder(iox2.ServiceName.new("plexa/taps/wake"))
            .event()
            .max_notifiers(_TAP_NOTIFIERS)
            .max_listeners(2)
            .max_nodes(_TAP_NOTIFIERS + 2)
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
        self._tap: Any = None
        self._tap_tried = 0.0

    def tap(self) -> None:
        """Wake the run's recorder for its taps (see :attr:`OutputField.TAPS`). A service that
        cannot be opened is tried again after a second, never per message."""
        if self._tap is None:
            now = time.monotonic()
            if now < self._tap_tried + 1.0:
                return
            self._tap_tried = now
            try:
                self._tap = self._domain.tap_wake_service().notifier_builder().create()
            except Exception:
                return
        with contextlib.suppress(Exception):
            self._tap.notify()

    def notifier(self, actor: str) -> Any:
        """A notifier that wakes ``actor``."""
        found = self._notifiers.get(actor)
        if found is None:
            found = self._domain.wake_service(self._spec, actor).notifier_builder().create()
            self._notifiers[actor] = found
        return found

    def wait(self, timeout: float) -> bool:
        """Block until woken or ``timeout`` seconds pass (the GIL is released meanwhile)."""
        return listen(self.listener, timeout)

    def close(self) -> None:
        """Release the listener and notifiers."""
        for notifier in self._notifiers.values():
            notifier.delete()
        self._notifiers.clear()
        if self._tap is not None:
            self._tap.delete()
            self._tap = None
        self.listener.delete()
