"""What happens to a consumer's links while it is down, restarted, or gone for good.

The flags live in the shared link counters (:mod:`plexa.data.counters`); the producer's side
reads them in :mod:`plexa.data.links`. The nexus calls these three functions when a consumer's
process ends, before its new process subscribes, and when it will not come back:

======================  ===========================================================
``hold(consumer)``      ``block`` producers wait (credits are not given back) instead
                        of counting a loss while nobody reads; the outputs it tapped
                        no longer wake it (its taps went with the process)
``release(consumer)``   what the dead process's queue held is counted as dropped; the
                        new subscriber lets held producers go once it is subscribed
``detach(consumer)``    producers stop waiting for it: it is gone for good
``close(producer)``     its consumers learn that no more messages will come
``reopen(producer)``    it is back (revived): its links are open again
======================  ===========================================================
"""

from __future__ import annotations

from plexa.core.spec import PipelineSpec, Policy
from plexa.data.counters import Counters, LinkField, OutputField

__all__ = ["close", "detach", "hold", "release", "reopen"]


def hold(counters: Counters, spec: PipelineSpec, consumer: str) -> None:
    """``consumer``'s process ended: hold its ``block`` producers until it is back, and
    stop the outputs it may have tapped from waking it."""
    for link in spec.links_to(consumer):
        if link.policy is Policy.BLOCK:
            counters.link_row(link.name)[LinkField.HOLD] = 1
    for output in spec.actors[consumer].taps:
        counters.output_row(output)[OutputField.TAPS] = 0


def release(counters: Counters, spec: PipelineSpec, consumer: str) -> None:
    """Before ``consumer``'s new process subscribes: what the dead queue held is dropped."""
    for link in spec.links_to(consumer):
        row = counters.link_row(link.name)
        sent = int(counters.output_row(link.output)[OutputField.SENT])
        gone = sent - int(row[LinkField.CONSUMED])
        if gone > 0:
            row[LinkField.DROPPED] += gone
        row[LinkField.CONSUMED] = sent
        if link.policy is Policy.BLOCK:
            row[LinkField.HOLD] = 1  # the new subscriber lets the producer go
        row[LinkField.DETACHED] = 0


def detach(counters: Counters, spec: PipelineSpec, consumer: str) -> None:
    """``consumer`` is gone for good: its producers stop waiting for it."""
    for link in spec.links_to(consumer):
        row = counters.link_row(link.name)
        row[LinkField.DETACHED] = 1
        row[LinkField.HOLD] = 0


def close(counters: Counters, spec: PipelineSpec, producer: str) -> None:
    """``producer`` is gone for good: its links are closed (``get`` raises ``LinkClosed``
    once their queues are empty)."""
    for link in spec.links_from(producer):
        counters.link_row(link.name)[LinkField.CLOSED] = 1


def reopen(counters: Counters, spec: PipelineSpec, producer: str) -> None:
    """``producer`` comes back: its links are open again."""
    for link in spec.links_from(producer):
        counters.link_row(link.name)[LinkField.CLOSED] = 0
