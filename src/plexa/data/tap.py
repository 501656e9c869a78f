"""A tap on a running link: see the messages of an output port without touching the link.

``plexa peek`` and ``plexa hz`` open the output port's iceoryx2 service from another
process and add one subscriber with a queue of one message. It is *lossy and never counted*:

* the service runs with safe overflow, so when the tap is slow the newer message replaces
  the older in the tap's queue; the publisher never waits for the tap;
* ``block`` links take their credits from the link's counters (the consumer's ``CONSUMED``),
  which the tap never writes, so a tap cannot hold a producer back;
* the tap reads sequence numbers from the message header, so rates are exact although most
  messages are skipped, and the link's ``sent``/``received``/``dropped``/``lost`` stay as
  they would be without it.

Each sample is decoded, described and released at once (:func:`describe`), so the tap holds
at most one of the publisher's samples for a few microseconds.

:class:`RecordingTap` is the same kind of subscriber with a longer queue, for the recorder
of outputs that were not linked to it when the run started: ``drop_oldest`` (the publisher
overwrites the oldest queued message when the recorder is behind, never waits for it), and
what it missed is counted from the gaps in the sequence numbers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from plexa.core.paths import RunPaths
from plexa.core.spec import PipelineSpec
from plexa.data import payload
from plexa.data.counters import Counters, OutputField
from plexa.data.domain import LAYOUT, META_LEN, SEQ, T_NS, Domain, Words, listen
from plexa.errors import PlexaError, RecordingError

__all__ = ["RecordingTap", "Tap", "TapSample", "TapWake", "describe", "tappable", "untappable"]


@dataclass(frozen=True)
class TapSample:
    """One message seen by a tap."""

    seq: int
    """Its number on the output port (0, 1, 2, ... as sent)."""
    t: float
    """When the tap took it (``time.monotonic()``)."""
    nbytes: int
    """Its size: an array's bytes plus its descriptor; the pickled size otherwise."""
    text: str
    """A short description: shape, dtype, min/mean/max for arrays; a short repr otherwise."""


def describe(obj: Any, width: int = 120) -> str:
    """A one-line description of a message: arrays by shape, dtype and min/mean/max."""
    if isinstance(obj, np.ndarray):
        text = f"array shape={obj.shape} dtype={obj.dtype}"
        if obj.size and obj.dtype.kind in "biuf":
            text += f" min={obj.min():.6g} mean={obj.mean():.6g} max={obj.max():.6g}"
        return text
    text = repr(obj)
    return text if len(text) <= width else text[: width - 3] + "..."


class Tap:
    """A lossy, uncounted subscriber on output port ``SRC.port`` of a running run."""

    def __init__(self, paths: RunPaths, spec: PipelineSpec, output: str) -> None:
        if not any(link.output == output for link in spec.links):
            known = sorted({link.output for link in spec.links})
            raise PlexaError(f"no link leaves {output!r} (linked outputs: {', '.join(known)})")
        self.output = output
        self._domain = Domain(paths, f"tap{os.getpid()}")
        service = self._domain.output_service(spec, output)
        try:
            self._subscriber = service.subscriber_builder().buffer_size(1).create()
        except Exception as exc:
            self._domain.close()
            raise PlexaError(f"cannot tap {output}: {exc}") from exc

    def take(self) -> TapSample | None:
        """The newest message since the last call, described, or None."""
        sample = self._subscriber.receive()
        if sample is None:
            return None
        try:
            header = Words.from_address(sample.user_header_ptr)
            seq, layout, meta_len = header[SEQ], header[LAYOUT], header[META_LEN]
            nbytes = int(sample.header.number_of_elements)
            try:
                obj = payload.decode(layout, meta_len, sample)
                text = describe(obj)
                if isinstance(obj, np.ndarray):  # the sample may be larger than the frame
                    nbytes = obj.nbytes + meta_len
                del obj
            except Exception as exc:  # a class this process cannot import, say
                text = f"<unreadable here: {type(exc).__name__}: {exc}>"
            return TapSample(int(seq), time.monotonic(), nbytes, text)
        finally:
            del sample

    def close(self) -> None:
        """Leave the service."""
        self._subscriber.delete()
        self._domain.close()

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def untappable(spec: PipelineSpec, output: str) -> str | None:
    """Why output port ``SRC.port`` cannot be tapped on this host, or None if it can: its
    messages must go through shared memory here, so at least one link from it must stay on
    the producer's host, and that host must be the nexus's."""
    src, _, port = output.partition(".")
    actor = spec.actors.get(src)
    if actor is None or port not in actor.outputs:
        outputs = [f"{n}.{p}" for n, a in spec.actors.items() for p in a.outputs]
        return f"no output {output!r} (outputs: {', '.join(outputs) or 'none'})"
    if not any(link.output == output and not spec.crosses_hosts(link) for link in spec.links):
        return f"nothing is sent on {output} through shared memory (it has no link on its host)"
    if spec.host_of(src) or spec.settings.launch != "local":
        return f"{output} is produced away from the nexus's host"
    return None


def tappable(spec: PipelineSpec) -> list[str]:
    """Every output port of ``spec`` that can be tapped on the nexus's host."""
    outputs = [f"{n}.{p}" for n, a in spec.actors.items() for p in a.outputs]
    return [x for x in outputs if untappable(spec, x) is None]


class RecordingTap:
    """A lossy subscriber on output port ``SRC.port`` that keeps up to ``capacity`` messages
    (at most the largest capacity of the output's links) for a recorder.

    It never holds the producer back nor touches the link counters (see the module doc):
    when it falls behind, the oldest queued message is overwritten, and :attr:`dropped`
    counts every message it missed since it opened.
    """

    def __init__(
        self,
        domain: Domain,
        spec: PipelineSpec,
        output: str,
        capacity: int,
        counters: Counters,
    ) -> None:
        why = untappable(spec, output)
        if why is not None:
            raise RecordingError(f"cannot record {output} live: {why}")
        room = max(link.capacity for link in spec.links if link.output == output)
        service = domain.output_service(spec, output)
        try:
            self._subscriber = (
                service.subscriber_builder().buffer_size(max(1, min(capacity, room))).create()
            )
        except Exception as exc:
            raise RecordingError(f"cannot record {output} live: {exc}") from exc
        self.output = output
        self._row = counters.output_row(output)
        self._row[OutputField.TAPS] += 1  # the producer wakes the tap listener from now on
        self.expected: int | None = None
        """The sequence number of the next message, once one was taken."""
        self.taken = 0
        self.dropped = 0
        """Messages sent since the first one taken that the tap missed."""

    def take_stamped(self) -> Any:
        """``(message, sequence number, send time in the producer's monotonic_ns)``, or None.
        An array is a read-only view into the sample, which it keeps until it is dropped."""
        sample = self._subscriber.receive()
        if sample is None:
            return None
        header = Words.from_address(sample.user_header_ptr)
        seq, t_ns = int(header[SEQ]), int(header[T_NS])
        if self.expected is not None and seq > self.expected:
            self.dropped += seq - self.expected
        self.expected = seq + 1
        self.taken += 1
        return payload.decode(header[LAYOUT], header[META_LEN], sample), seq, t_ns

    def close(self) -> None:
        """Leave the service (the producer no longer keeps messages for this tap)."""
        self._row[OutputField.TAPS] = max(0, self._row[OutputField.TAPS] - 1)
        self._subscriber.delete()


class TapWake:
    """The run's tap wake-up listener, for a recorder that reads taps only: the producer of
    an output with a :class:`RecordingTap` open notifies it after every send."""

    def __init__(self, domain: Domain) -> None:
        self._listener = domain.tap_wake_service().listener_builder().create()

    def wait(self, timeout: float) -> None:
        """Block until a tapped output sent something or ``timeout`` seconds passed."""
        listen(self._listener, timeout)

    def close(self) -> None:
        """Stop listening."""
        self._listener.delete()
