"""One set of checks that every object store and every port implementation must pass: the
real ones (LMDB, iceoryx2) and the in-process ones that ``plexa.testing`` gives actor tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from plexa.core.ports import InputPortLike, ObjectStore, OutputPortLike
from plexa.data.inputs import InputPort
from plexa.data.links import OutputPort
from plexa.data.store import Store
from plexa.errors import KeyNotFound
from plexa.testing import ActorHarness, MemoryStore


@pytest.fixture(params=["lmdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    made: ObjectStore = (
        Store(tmp_path / "store", 16 * 2**20, create=True)
        if request.param == "lmdb"
        else MemoryStore()
    )
    try:
        yield made
    finally:
        made.close()


def test_a_store_is_an_object_store(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)


def test_put_returns_a_key_that_gets_an_equal_object_back(store: ObjectStore) -> None:
    key = store.put({"a": [1, 2.5, "x"]})
    assert store.get(key) == {"a": [1, 2.5, "x"]}
    assert key in store and key in set(store.keys())
    assert store.put("second") != key


def test_arrays_come_back_bit_exact_with_their_dtype_and_shape(store: ObjectStore) -> None:
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4)
    back = store.get(store.put(arr))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert np.array_equal(back, arr)


def test_a_named_key_is_overwritten_and_deleted(store: ObjectStore) -> None:
    assert store.put(1, key="k") == "k"
    store.put(2, key="k")
    assert store.get("k") == 2
    assert store.delete("k") is True
    assert store.delete("k") is False
    assert "k" not in store


def test_a_missing_key_raises_key_not_found(store: ObjectStore) -> None:
    with pytest.raises(KeyNotFound):
        store.get("nope")


def test_every_port_kind_satisfies_the_port_protocols() -> None:
    import plexa

    class Echo(plexa.Actor):
        inputs = plexa.ports("inp")
        outputs = plexa.ports("out")

    harness = ActorHarness(Echo)
    for port in harness.outputs.values():
        assert isinstance(port, OutputPortLike)
    for port in harness.inputs.values():
        assert isinstance(port, InputPortLike)
    for cls, proto in ((OutputPort, OutputPortLike), (InputPort, InputPortLike)):
        missing = [
            name
            for name in vars(proto)
            if not name.startswith("_") and not callable(getattr(cls, name, None))
        ]
        assert not missing, (cls.__name__, missing)
