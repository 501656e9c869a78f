"""Batches on cross-host links (plexa.data.zenoh_wire): small messages put back to back
travel several to a Zenoh put and arrive as the messages they were, in order, with every
counter right; a lone message is never held back; a garbled batch is refused and counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import pytest

zenoh = pytest.importorskip("zenoh", reason="eclipse-zenoh is not installed (extra 'hosts')")

from conftest import wait_for  # noqa: E402
from plexa.core.spec import LinkSpec, Policy  # noqa: E402
from plexa.data import zenoh_links  # noqa: E402
from plexa.data.inputs import EMPTY  # noqa: E402
from plexa.data.zenoh_inputs import ZenohInputPort  # noqa: E402
from plexa.data.zenoh_links import ZenohOutputPort, link_key  # noqa: E402
from plexa.data.zenoh_session import ZenohSettings, open_session, wait_connected  # noqa: E402
from plexa.data.zenoh_wire import BATCH, HEADER, LENGTH, MSGPACK, SMALL  # noqa: E402
from test_zenoh_links import _port  # noqa: E402

RUN = "test"


def _link(policy: Policy, capacity: int) -> LinkSpec:
    return LinkSpec(
        src="src", src_port="out", dst="dst", dst_port="inp", policy=policy, capacity=capacity
    )


class Ends:
    """A producer session and a consumer session in this process, connected over loopback;
    the producer's Zenoh puts are counted."""

    def __init__(self, link: LinkSpec) -> None:
        ep = f"tcp/127.0.0.1:{_port()}"
        self.a = open_session(ZenohSettings(listen=(ep,)))
        self.b = open_session(ZenohSettings(connect=(ep,)))
        wait_connected(self.b, timeout=10)
        self.link = link
        self.inp = ZenohInputPort(self.a, RUN, link.dst, link.dst_port, [link])
        self.out = ZenohOutputPort(self.b, RUN, link.src, link.src_port, [link], batch=True)
        self.puts = 0
        put = self.out._put

        def counted(buf: Any) -> None:
            self.puts += 1
            put(buf)

        self.out._put = counted  # type: ignore[method-assign]
        wait_for(self.out._room, 10, "the consumer to subscribe")

    def stats(self) -> tuple[int, int, int, int]:
        s = self.inp.statistics()[self.link.name]
        return s.sent, s.received, s.dropped, s.lost

    def close(self) -> None:
        self.out.close(linger=0.5)
        self.inp.close()
        self.b.close()
        self.a.close()


@pytest.fixture
def ends(request: pytest.FixtureRequest) -> Iterator[Ends]:
    e = Ends(request.param)
    yield e
    e.close()


@pytest.mark.parametrize("ends", [_link(Policy.BLOCK, 64)], indirect=True)
def test_a_block_link_batches_a_burst_and_delivers_it_in_order_with_credits_per_message(
    ends: Ends,
) -> None:
    count = 3000
    got: list[int] = []

    def consume() -> None:
        while len(got) < count:
            got.append(int(ends.inp.get(timeout=10)[0]))

    reader = threading.Thread(target=consume)
    reader.start()
    for i in range(count):  # back to back: held and sent in batches; at most 64 unacknowledged
        ends.out.put(np.array([i, 0, 0], np.int64))
        assert ends.out.sent - 1 - ends.out._outs[0].acked <= 64
    ends.out.flush()
    reader.join(20)
    assert got == list(range(count))
    assert ends.stats() == (count, count, 0, 0)
    assert ends.puts < count / 4, f"{ends.puts} Zenoh puts for {count} messages: no batching"


@pytest.mark.parametrize("ends", [_link(Policy.DROP_OLDEST, 16)], indirect=True)
def test_a_drop_oldest_link_keeps_the_newest_messages_of_batches_and_counts_the_rest(
    ends: Ends,
) -> None:
    count = 2000
    for i in range(count):  # nobody takes meanwhile: the consumer's queue keeps 16
        ends.out.put({"n": i})
    ends.out.sync()  # (flushes, then tells the consumer where the producer is)
    wait_for(  # (has_pending moves what Zenoh's channel holds into the consumer's queue)
        lambda: ends.inp.has_pending() and ends.stats()[0] == count, 10, "the sync to arrive"
    )
    got = []
    while (msg := ends.inp.take()) is not EMPTY:
        got.append(msg["n"])
    sent, received, dropped, lost = ends.stats()
    assert (sent, received + dropped, lost) == (count, count, 0)
    assert got == list(range(count - len(got), count)) and 0 < len(got) <= 16
    assert received == len(got)
    assert ends.puts < count / 4


@pytest.mark.parametrize("ends", [_link(Policy.BLOCK, 8)], indirect=True)
def test_a_lone_message_goes_out_at_once_while_its_producer_sits_idle(ends: Ends) -> None:
    """No timer thread flushes a batch: a message put after a pause is never held (and the
    runtime flushes what a burst left at the actor's next safe point: tests/test_hosts.py)."""
    for i in range(3):
        time.sleep(0.05)  # a pause longer than a burst's gap: then one message
        ends.out.put({"n": i})
        started = time.monotonic()
        assert ends.inp.get(timeout=0.5) == {"n": i}  # no flush, no other message after it
        assert time.monotonic() - started < 0.5
    assert ends.stats() == (3, 3, 0, 0)


def _message(seq: int, obj: object, kind: int = MSGPACK) -> bytes:
    return HEADER.pack(seq, 0, 0, kind) + msgspec.msgpack.encode(obj)


def _batch(first: int, count: int, messages: list[bytes], tail: bytes = b"") -> bytes:
    body = b"".join(LENGTH.pack(len(m)) + m for m in messages)
    return HEADER.pack(first, 0, count, BATCH) + body + tail


@pytest.mark.parametrize("ends", [_link(Policy.BLOCK, 16)], indirect=True)
def test_garbled_batches_are_refused_and_counted_lost_and_the_consumer_goes_on(
    ends: Ends,
) -> None:
    entry = LENGTH.pack(10_000) + HEADER.pack(5, 0, 0, MSGPACK)  # runs past the batch's end
    hostile = [
        _message(0, {"n": 0}),
        _batch(1, 3, [_message(1, 1), _message(99, 2), _message(3, 3)]),  # a wrong seq: 3 lost
        HEADER.pack(4, 0, 2, BATCH) + _message(4, 4)[:10] + entry,  # a length too long: 2 lost
        HEADER.pack(6, 0, 10**9, BATCH) + b"\0" * 64,  # an impossible count: only refused
        _batch(6, 2, [_message(6, 6, kind=BATCH), _message(7, 7)]),  # a batch inside: 2 lost
        _batch(8, 1, [_message(8, 8)], tail=b"xyz"),  # bytes after the last message: 1 lost
        _batch(9, 3, [_message(9, 9), _message(10, 10)]),  # fewer messages than it says
        b"\x01\x02\x03",  # shorter than a header: ignored
        _batch(12, 2, [_message(12, {"n": 12}), _message(13, {"n": 13})]),  # good
    ]
    raw = ends.b.declare_publisher(link_key(RUN, ends.link))
    try:
        for frame in hostile:
            raw.put(frame)
        got = [ends.inp.get(timeout=5) for _ in range(3)]
    finally:
        raw.undeclare()
    assert got == [{"n": 0}, {"n": 12}, {"n": 13}]
    assert ends.stats() == (14, 3, 0, 11)
    assert ends.inp._subs[0].errors == 6
    assert "refused" in ends.inp.errors()[0]


@pytest.mark.parametrize("ends", [_link(Policy.BLOCK, 1024)], indirect=True)
def test_only_small_messages_are_batched_and_a_big_one_goes_after_what_was_held(
    ends: Ends, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the producer's clock stands still: every put comes "back to back" (within the 1 ms
    # that holds a message) however slowly this process runs on a busy machine
    still = SimpleNamespace(monotonic=lambda: 1000.0, time_ns=time.time_ns)
    monkeypatch.setattr(zenoh_links, "time", still)
    big = np.arange(SMALL, dtype=np.uint8)  # over SMALL with its header: never held
    for i in range(5):
        ends.out.put({"n": i})
    ends.out.put(big)
    ends.out.put({"n": 5})
    ends.out.flush()
    got = [ends.inp.get(timeout=5) for _ in range(7)]
    assert got[:5] == [{"n": i} for i in range(5)] and got[6] == {"n": 5}
    assert np.array_equal(got[5], big)
    assert ends.puts == 4  # the first alone; 4 held, sent before the big one; it; the last
    assert ends.stats() == (7, 7, 0, 0)
