"""The LMDB object store: round trips, zero-copy views, a full store, several processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from plexa.data.store import Store, StoreStatistics, remove_store
from plexa.errors import KeyNotFound, StoreError, StoreFull

SRC = str(Path(__file__).resolve().parents[1] / "src")
MB = 2**20


@pytest.fixture
def path() -> Iterator[Path]:
    """A store path on /dev/shm, as in a real run, removed afterwards."""
    root = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="test-store-"))
    yield root / "store"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    with Store(path, 64 * MB, create=True) as s:
        yield s


def python(code: str, **kwargs: object) -> subprocess.Popen[str]:
    """Run ``code`` in a fresh interpreter that can import plexa."""
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-c", code], env=env, text=True, **kwargs
    )


def base_chain(arr: np.ndarray) -> list[object]:
    chain: list[object] = []
    obj: object = arr
    while obj is not None:
        chain.append(obj)
        obj = getattr(obj, "base", None)
    return chain


def test_dicts_strings_and_arrays_come_back_equal_with_dtype_and_shape(store: Store) -> None:
    arrays: list[np.ndarray] = [
        np.arange(12, dtype=np.int16).reshape(3, 4),
        np.random.default_rng(0).random((64, 1024)),
        np.asfortranarray(np.arange(30, dtype=np.float32).reshape(5, 6)),
        np.arange(20)[::3],  # not contiguous: pickled in-band
        np.zeros(0, dtype=np.uint8),
    ]
    value = {"name": "frame", "n": 3, "arrays": arrays, "raw": b"\x00\x01"}
    got = store.get(store.put(value))
    assert got["name"] == "frame" and got["n"] == 3 and got["raw"] == b"\x00\x01"
    for a, b in zip(arrays, got["arrays"], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert store.get(store.put("text")) == "text"


def test_get_returns_writable_arrays_that_own_a_copy(store: Store) -> None:
    key = store.put(np.ones(100_000))
    arr = store.get(key)
    assert arr.flags.writeable
    arr[:] = 7
    assert store.get(key)[0] == 1.0


def test_put_without_a_key_makes_a_new_one_and_with_a_key_replaces(store: Store) -> None:
    assert store.put(1) != store.put(1)
    assert store.put("a", key="result:x") == "result:x"
    store.put("b", key="result:x")
    assert store.get("result:x") == "b"
    assert len(store) == 3
    assert "result:x" in sorted(store.keys())


def test_get_of_a_missing_key_raises_key_not_found(store: Store) -> None:
    with pytest.raises(KeyNotFound, match="nope"):
        store.get("nope")
    with pytest.raises(KeyError), store.view("nope"):
        pass


def test_delete_removes_the_key_and_says_whether_it_was_there(store: Store) -> None:
    key = store.put([1, 2, 3])
    assert key in store
    assert store.delete(key) is True
    assert key not in store
    assert store.delete(key) is False
    with pytest.raises(KeyNotFound):
        store.get(key)


def test_view_gives_read_only_arrays_on_the_stored_memory(store: Store) -> None:
    data = np.random.default_rng(1).random((256, 256))
    key = store.put({"img": data, "label": "x"})
    with store.view(key) as obj:
        img = obj["img"]
        assert obj["label"] == "x"
        assert img.flags.writeable is False
        assert any(isinstance(b, memoryview) for b in base_chain(img))
        assert img.ctypes.data % 64 == 0  # large buffers land on a cache line
        np.testing.assert_array_equal(img, data)
        with pytest.raises(ValueError):
            img[0, 0] = 1.0
        store.put("a write while a view is open is fine")
        del img, obj


def test_a_value_larger_than_the_map_raises_store_full_naming_store_size(path: Path) -> None:
    with Store(path, 1 * MB, create=True) as small:
        with pytest.raises(StoreFull, match=r"object store full \(1 MB\).*settings\.store_size"):
            small.put(np.zeros(2 * MB, dtype=np.uint8))
        assert small.get(small.put("still usable")) == "still usable"


def test_statistics_count_entries_and_bytes(store: Store) -> None:
    before = store.statistics()
    store.put(np.zeros(MB, dtype=np.uint8))
    after = store.statistics()
    assert isinstance(after, StoreStatistics)
    assert after.entries == before.entries + 1
    assert after.used_bytes >= before.used_bytes + MB
    assert after.map_size == 64 * MB


def test_a_second_store_on_the_same_path_sees_the_first_ones_values(
    store: Store, path: Path
) -> None:
    key = store.put(np.arange(1000))
    with Store(path, 64 * MB) as other:
        np.testing.assert_array_equal(other.get(key), np.arange(1000))
        other.put("back", key="reply")
    assert store.get("reply") == "back"  # closing one handle leaves the other open


def test_replacing_a_value_over_and_over_reuses_the_freed_room(path: Path) -> None:
    with Store(path, 8 * MB, create=True) as store:
        for i in range(10):  # 3 MB in 8 MB: only fits if the last value's pages come back
            store.delete("big")
            store.put(np.full(3 * MB, i, dtype=np.uint8), key="big")
            store.put(np.full(3 * MB, i, dtype=np.uint8), key="big")
        assert store.get("big")[-1] == 9
        assert sorted(store.keys()) == ["big"]


def test_opening_a_store_that_does_not_exist_raises_store_error(path: Path) -> None:
    with pytest.raises(StoreError, match="no object store"):
        Store(path, MB)


def test_a_closed_store_refuses_work(store: Store) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.put(1)


def test_a_child_process_gets_what_the_parent_put(store: Store, path: Path) -> None:
    key = store.put({"a": np.arange(10_000, dtype=np.int32)})
    code = (
        "from plexa.data.store import Store\n"
        f"s = Store({str(path)!r}, {64 * MB})\n"
        f"v = s.get({key!r})\n"
        "s.put(int(v['a'].sum()), key='sum')\n"
    )
    assert python(code).wait(timeout=60) == 0
    assert store.get("sum") == sum(range(10_000))


def test_a_reader_killed_with_sigkill_does_not_pin_pages(path: Path) -> None:
    size = 8 * MB
    first = Store(path, size, create=True)
    first.put(np.zeros(3 * MB, dtype=np.uint8), key="big")
    code = (
        "import time, lmdb\n"
        f"env = lmdb.open({str(path)!r}, map_size={size})\n"
        "txn = env.begin()\n"
        "print('reading', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = python(code, stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline().strip() == "reading"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert first._env is not None and str(child.pid) in first._env.readers()
    # ``first`` keeps the environment open, as the nexus does, so LMDB does not reset the
    # reader table on the next open: only reader_check() can free the dead reader's slot.
    with Store(path, size) as store:
        assert store._env is not None and str(child.pid) not in store._env.readers()
        for i in range(6):  # each round needs the pages the dead reader could see
            store.delete("big")
            store.put(np.full(3 * MB, i, dtype=np.uint8), key="big")
        assert store.get("big")[0] == 5
    first.close()


def test_remove_store_deletes_the_directory(path: Path) -> None:
    Store(path, MB, create=True).close()
    assert path.is_dir()
    Store.remove(path)
    assert not path.exists()
    remove_store(path)  # already gone: fine


def test_an_empty_or_overlong_key_raises_store_error(store: Store) -> None:
    for key in ("", "x" * 600):
        with pytest.raises(StoreError, match="store keys are 1 to 511 bytes"):
            store.put(1, key=key)
        with pytest.raises(StoreError):
            store.get(key)
