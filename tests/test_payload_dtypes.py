"""Every payload either arrives equal or is refused in the producer, naming the port.

The unit tests lay payloads out in ordinary memory and read them back the way a consumer
does; the pipeline tests send them through real links between real processes. The actors
used by the pipelines are defined here too (actor processes import ``test_payload_dtypes``).
"""

from __future__ import annotations

import ctypes
import sys
import textwrap
import time
import types
from typing import Any

import numpy as np
import numpy.lib.format as npformat
import pytest

import plexa
from conftest import started, wait_for
from plexa.data import payload
from plexa.errors import PayloadError


def dtype_samples() -> list[np.ndarray[Any, Any]]:
    """Arrays of dtypes a link must carry as raw bytes, datetime units that do not fit in
    8 characters included."""
    t0 = np.datetime64("2026-12-02T15:36:47.123456789", "ns")
    record = np.dtype([("t", "M8[us]"), ("dt", "m8[10ms]"), ("xy", "<f4", (2,)), ("tag", "S3")])
    rec = np.zeros(3, record)
    rec["t"] = [t0, t0 + np.timedelta64(1, "s"), np.datetime64("NaT")]
    rec["dt"] = np.arange(3)
    rec["xy"] = [[1, 2], [3, 4], [5, 6]]
    rec["tag"] = [b"a", b"bc", b"def"]
    return [
        np.arange(5).astype("M8[10ms]"),
        np.array([t0, np.datetime64("NaT")], "M8[ns]"),
        np.arange(4).astype("M8[D]").reshape(2, 2),
        np.arange(3).astype("M8[Y]"),
        np.arange(3).astype("M8[25us]"),
        np.arange(6).astype("m8[3h]"),
        np.array([1, -2, 3], ">m8[ps]"),  # big-endian
        np.array(np.datetime64("2026-01-01", "D")),  # zero-dimensional
        np.arange(8, dtype=np.float16),
        np.array(["é", "ab", ""], "U2"),
        np.array([b"x", b"yz"], "S2"),
        np.arange(6, dtype=np.complex128).reshape(3, 2)[:, 1],  # not contiguous
        rec,
        np.zeros((0, 3), "M8[ms]"),  # empty
    ]


def fingerprint(a: np.ndarray[Any, Any]) -> tuple[str, tuple[int, ...], bytes]:
    """Dtype (byte order and units included), shape and bytes of an array.

    (Pickling, as the store does, turns a big-endian datetime64 array into a native one
    with the same values, so arrays are compared by fingerprints taken in the consumer.)"""
    return str(npformat.dtype_to_descr(a.dtype)), a.shape, np.ascontiguousarray(a).tobytes()


def same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """Equal dtype, shape and bytes (NaT included)."""
    return fingerprint(a) == fingerprint(b)


class _Sample:
    """The two things :func:`payload.decode` reads of an iceoryx2 sample."""

    def __init__(self, memory: ctypes.Array[ctypes.c_uint8]) -> None:
        self.memory = memory
        self.payload_ptr = ctypes.addressof(memory)
        self.header = types.SimpleNamespace(number_of_elements=len(memory))


def roundtrip(obj: object) -> Any:
    """``obj`` written as a producer writes it and read as a consumer reads it."""
    enc = payload.encode(obj)
    memory = (ctypes.c_uint8 * enc.nbytes)()
    payload.write(enc, ctypes.addressof(memory), enc.nbytes)
    return payload.decode(enc.layout, len(enc.meta), _Sample(memory))


# ----- payload encode / decode, no processes --------------------------------------------------
@pytest.mark.parametrize("arr", dtype_samples(), ids=lambda a: str(a.dtype))
def test_an_array_of_any_plain_dtype_is_read_back_as_a_read_only_view(
    arr: np.ndarray[Any, Any],
) -> None:
    enc = payload.encode(arr)
    assert enc.layout != payload.PICKLE
    got = roundtrip(arr)
    assert same(got, arr)
    assert not got.flags.writeable


def test_a_datetime_unit_longer_than_eight_characters_is_described_whole() -> None:
    meta = payload.array_meta((2, 3), np.dtype("<M8[10ms]"))
    assert payload.parse_meta(meta) == ((2, 3), np.dtype("<M8[10ms]"))
    record = np.dtype([("when", "M8[25us]"), ("value", ">f8")])
    assert payload.parse_meta(payload.array_meta((4,), record)) == ((4,), record)


def test_arrays_of_objects_are_pickled_and_arrive_equal() -> None:
    arr = np.array([{"a": 1}, None, "x"], dtype=object)
    assert payload.encode(arr).layout == payload.PICKLE
    assert list(roundtrip(arr)) == list(arr)
    nested = {"when": np.arange(3).astype("M8[10ms]"), "n": 1}
    got = roundtrip(nested)
    assert same(got["when"], nested["when"]) and got["n"] == 1


def test_an_array_of_objects_has_no_raw_descriptor() -> None:
    with pytest.raises(PayloadError, match="holds Python objects"):
        payload.array_meta((3,), np.dtype(object))
    with pytest.raises(PayloadError, match="holds Python objects"):
        payload.array_meta((3,), np.dtype([("a", "i4"), ("b", "O")]))


def test_a_corrupt_descriptor_is_a_payload_error() -> None:
    meta = payload.array_meta((2,), np.dtype("M8[ms]"))
    enc = payload.Encoded(payload.layout_key(meta) ^ 2, meta, [memoryview(bytes(16))])
    memory = (ctypes.c_uint8 * enc.nbytes)()
    payload.write(enc, ctypes.addressof(memory), enc.nbytes)
    with pytest.raises(PayloadError, match="corrupt array descriptor"):
        payload.decode(enc.layout, len(enc.meta), _Sample(memory))


# ----- through real links ----------------------------------------------------------------------
class DtypeSource(plexa.Actor):
    """Sends :func:`dtype_samples` with ``put`` or ``loan``, then tries to send things that
    cannot be sent and puts the errors it got in the store."""

    outputs = plexa.ports("out")

    def setup(self, loan: bool = False) -> None:
        self.loan = loan
        self.todo = dtype_samples()
        self.errors: list[str] = []
        self.sent = 0

    def run_step(self) -> None:
        if not self.todo:
            time.sleep(0.005)
            return
        arr = self.todo.pop(0)
        if self.loan:
            with self.outputs.out.loan(arr.shape, arr.dtype) as frame:
                frame[...] = arr
        else:
            self.outputs.out.put(arr)
        self.sent += 1
        if not self.todo:
            self.try_unsendable()

    def try_unsendable(self) -> None:
        attempts: list[Any] = [
            lambda: self.outputs.out.put(lambda x: x),
            lambda: self.outputs.out.put({"gen": (i for i in range(3))}),
            lambda: self.outputs.out.loan((3,), object),
        ]
        for attempt in attempts:
            try:
                attempt()
            except PayloadError as exc:
                self.errors.append(str(exc))
        self.store.put({"errors": self.errors, "sent": self.sent}, key="result:src")


class DtypeCopier(plexa.Actor):
    """Keeps a copy of every array received (and whether the view was read-only)."""

    def setup(self) -> None:
        self.got: list[tuple[str, tuple[int, ...], bytes]] = []
        self.read_only: list[bool] = []

    @plexa.on("inp")
    def got_one(self, msg: np.ndarray[Any, Any]) -> None:
        self.read_only.append(not msg.flags.writeable)
        self.got.append(fingerprint(msg))

    def stop(self) -> None:
        self.store.put({"got": self.got, "read_only": self.read_only}, key="result:dst")


def spec_of(text: str) -> plexa.PipelineSpec:
    return plexa.loads(textwrap.dedent(text), source="test.yaml")


def run_dtypes(loan: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Send every sample array with put or loan; returns (source, sink, link status)."""
    n = len(dtype_samples())
    spec = spec_of(f"""
        actors:
          src: {{class: "test_payload_dtypes:DtypeSource", options: {{loan: {str(loan).lower()}}}}}
          dst: {{class: "test_payload_dtypes:DtypeCopier"}}
        connections:
          src.out: {{to: [dst.inp], policy: block, capacity: 16}}
    """)
    with started(spec) as nexus:
        nexus.wait_until(lambda st: st["actors"]["dst"]["msgs_in"] >= n, 30)
        wait_for(lambda: "result:src" in nexus.store, 30, "the producer's refusals")
        nexus.stop()
        link = nexus.status()["links"]["src.out->dst.inp"]
        return nexus.store.get("result:src"), nexus.store.get("result:dst"), link


@pytest.mark.parametrize("loan", [False, True], ids=["put", "loan"])
def test_arrays_of_every_plain_dtype_arrive_equal_through_a_link(loan: bool) -> None:
    _, dst, link = run_dtypes(loan)
    want = dtype_samples()
    assert len(dst["got"]) == len(want)
    for sent, got in zip(want, dst["got"], strict=True):
        assert tuple(got) == fingerprint(sent), (sent.dtype, got[0])
    assert all(dst["read_only"])
    assert (link["sent"], link["received"], link["dropped"], link["lost"]) == (len(want),) * 2 + (
        0,
        0,
    )


def test_an_unsendable_object_is_refused_in_the_producer_and_never_counted() -> None:
    src, _, link = run_dtypes(loan=False)
    errors = src["errors"]
    assert len(errors) == 3, errors
    assert all(e.startswith("output src.out: ") for e in errors), errors
    assert "cannot send function" in errors[0] and "lambda" in errors[0]
    assert "cannot send dict" in errors[1] and "generator" in errors[1]
    assert "cannot loan" in errors[2] and "holds Python objects" in errors[2]
    assert link["sent"] == link["received"] == src["sent"] == len(dtype_samples())


class GhostSource(plexa.Actor):
    """Sends objects of a class only its own process can import, then plain numbers."""

    outputs = plexa.ports("out")

    def setup(self, ghosts: int = 3, numbers: int = 5) -> None:
        module = types.ModuleType("plexa_ghost_only_here")
        ghost = type("Ghost", (), {"__module__": module.__name__})
        module.Ghost = ghost  # type: ignore[attr-defined]
        sys.modules[module.__name__] = module
        self.todo: list[Any] = [ghost() for _ in range(ghosts)] + list(range(numbers))

    def run_step(self) -> None:
        if self.todo:
            self.outputs.out.put(self.todo.pop(0))
        else:
            time.sleep(0.005)


class Numbers(plexa.Actor):
    """Keeps what it receives."""

    def setup(self) -> None:
        self.got: list[Any] = []

    @plexa.on("inp")
    def got_one(self, msg: Any) -> None:
        self.got.append(msg)

    def stop(self) -> None:
        self.store.put(self.got, key="result:dst")


def test_a_message_the_consumer_cannot_read_counts_as_lost_and_the_consumer_goes_on() -> None:
    spec = spec_of("""
        actors:
          src: {class: "test_payload_dtypes:GhostSource"}
          dst: {class: "test_payload_dtypes:Numbers"}
        connections:
          src.out: {to: [dst.inp], policy: block, capacity: 16}
    """)
    warned = "link src.out->dst.inp: message 0 cannot be read here and counts as lost"

    def logged() -> bool:
        nexus.poll(0.05)
        return any(rec["message"].startswith(warned) for rec in nexus.recent_logs)

    with started(spec) as nexus:
        nexus.wait_until(lambda st: st["links"]["src.out->dst.inp"]["received"] >= 5, 30)
        wait_for(logged, 10, "the consumer's error line")
        nexus.stop()
        link = nexus.status()["links"]["src.out->dst.inp"]
        got = nexus.store.get("result:dst")
    assert got == [0, 1, 2, 3, 4]
    assert (link["sent"], link["received"], link["lost"]) == (8, 5, 3)
    assert not nexus.failures
