"""Who is here: hosts (or any named member) of a run announce themselves with a Zenoh
liveliness token and watch each other's, so a departure is noticed without heartbeats of
our own.

Measured with plexa's sessions (lease 1 s, see :mod:`plexa.data.zenoh_session`): a member
killed with ``kill -9`` is gone for the others within milliseconds (its sockets close); one
whose cable is cut, within ~1 s (the lease); it is back ~1 s after the cable is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import zenoh

from plexa.errors import Timeout

__all__ = ["Presence"]

Change = Callable[[str, bool], None]
"""Called (on a Zenoh thread) with a member's name and whether it is now present."""


class Presence:
    """Announce ``name`` as a member of run ``run`` and watch the other members.

    ``on_change(name, present)`` is called for every arrival and departure (this member's
    own token included); :meth:`members` lists who is present now.
    """

    def __init__(
        self, session: zenoh.Session, run: str, name: str, on_change: Change | None = None
    ) -> None:
        self.name = name
        self._prefix = f"plexa/{run}/member/"
        self._present: set[str] = set()
        self._cond = threading.Condition()
        self._on_change = on_change
        liveliness = session.liveliness()
        self._watch = liveliness.declare_subscriber(self._prefix + "*", self._sample, history=True)
        self._token = liveliness.declare_token(self._prefix + name)

    def _sample(self, sample: zenoh.Sample) -> None:
        member = str(sample.key_expr)[len(self._prefix) :]
        present = sample.kind == zenoh.SampleKind.PUT
        with self._cond:
            if present:
                self._present.add(member)
            else:
                self._present.discard(member)
            self._cond.notify_all()
        if self._on_change is not None:
            self._on_change(member, present)

    def members(self) -> set[str]:
        """The members present now."""
        with self._cond:
            return set(self._present)

    def wait(self, member: str, present: bool = True, timeout: float = 10.0) -> float:
        """Wait until ``member`` is present (or gone); returns the seconds waited, or raises
        :class:`plexa.Timeout`."""
        start = time.monotonic()
        with self._cond:
            if not self._cond.wait_for(lambda: (member in self._present) == present, timeout):
                state = "present" if present else "gone"
                raise Timeout(f"member {member} not {state} within {timeout} s")
        return time.monotonic() - start

    def close(self) -> None:
        """Withdraw this member's token and stop watching."""
        for entity in (self._token, self._watch):
            _undeclare(entity)


def _undeclare(entity: Any) -> None:
    entity.undeclare()
