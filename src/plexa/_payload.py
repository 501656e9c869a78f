"""How a Python object is laid out in a link's shared-memory sample, and read back in place.

Two layouts, told apart by ``kind`` in the sample header:

* ``ARRAY``: a numpy array with a plain dtype: a small descriptor, then the raw data at a
  64-byte aligned offset. Read back as a read-only view, no copy.
* ``PICKLE``: anything else, as pickle protocol 5 with its out-of-band buffers after the
  pickle stream, each 64-byte aligned, so arrays nested in dicts or lists are not copied either.

Views handed out keep the sample they point into alive (it is anchored on the ctypes buffer
every view derives from), so a view can never show another message's data.
"""

from __future__ import annotations

import ctypes
import pickle
import struct
from typing import Any

import numpy as np

__all__ = ["ARRAY", "PICKLE", "Encoded", "decode", "encode", "write"]

ARRAY = 1
PICKLE = 2
_ALIGN = 64
_DESC = struct.Struct("<8sI")
_LEN = struct.Struct("<Q")
_dtype_cache: dict[bytes, tuple[np.dtype[Any], tuple[int, ...]]] = {}


def _pad(ptr: int, offset: int) -> int:
    """Smallest offset >= ``offset`` at which ``ptr + offset`` is 64-byte aligned."""
    return offset + (-(ptr + offset) % _ALIGN)


class Encoded:
    """An object ready to be written: its kind, descriptor bytes and raw buffers."""

    __slots__ = ("buffers", "kind", "meta", "nbytes")

    def __init__(self, kind: int, meta: bytes, buffers: list[memoryview]) -> None:
        self.kind = kind
        self.meta = meta
        self.buffers = buffers
        self.nbytes = len(meta) + sum(b.nbytes + _ALIGN for b in buffers) + _ALIGN


def array_meta(shape: tuple[int, ...], dtype: np.dtype[Any]) -> bytes:
    """The descriptor of an ``ARRAY`` payload."""
    return _DESC.pack(dtype.str.encode(), len(shape)) + struct.pack(f"<{len(shape)}Q", *shape)


def encode(obj: object) -> Encoded:
    """Lay ``obj`` out for a sample without copying array data."""
    if type(obj) is np.ndarray and obj.dtype.kind in "biufcmM" and obj.flags.c_contiguous:
        data = memoryview(obj).cast("B")  # type: ignore[arg-type]
        return Encoded(ARRAY, array_meta(obj.shape, obj.dtype), [data])
    raw: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(obj, protocol=5, buffer_callback=raw.append)
    views = [b.raw() for b in raw]
    head = struct.pack(f"<I{len(views)}Q", len(views), *(v.nbytes for v in views))
    return Encoded(PICKLE, head + stream, views)


def write(enc: Encoded, ptr: int, size: int) -> None:
    """Copy ``enc`` into the ``size`` bytes at address ``ptr`` (a loaned sample)."""
    dst = (ctypes.c_uint8 * size).from_address(ptr)
    mv = memoryview(dst).cast("B")
    n = len(enc.meta)
    mv[:n] = enc.meta
    offset = n
    for buf in enc.buffers:
        offset = _pad(ptr, offset)
        mv[offset : offset + buf.nbytes] = buf
        offset += buf.nbytes


def data_offset(ptr: int, meta_len: int) -> int:
    """Where an ``ARRAY`` payload's data starts."""
    return _pad(ptr, meta_len)


def decode(kind: int, meta_len: int, ptr: int, size: int, anchor: object) -> Any:
    """Read the payload at ``ptr`` as an object; arrays are read-only views kept alive by
    ``anchor`` (the received sample)."""
    buf = (ctypes.c_uint8 * size).from_address(ptr)
    buf._plexa_sample = anchor  # type: ignore[attr-defined]
    if kind == ARRAY:
        meta = bytes(buf[:meta_len]) if meta_len <= 64 else bytes(memoryview(buf)[:meta_len])
        cached = _dtype_cache.get(meta)
        if cached is None:
            code, ndim = _DESC.unpack_from(meta)
            shape = struct.unpack_from(f"<{ndim}Q", meta, _DESC.size)
            cached = (np.dtype(code.rstrip(b"\0").decode()), tuple(shape))
            if len(_dtype_cache) > 256:
                _dtype_cache.clear()
            _dtype_cache[meta] = cached
        dtype, shape = cached
        count = 1
        for dim in shape:
            count *= dim
        arr = np.frombuffer(buf, dtype, count, _pad(ptr, meta_len)).reshape(shape)  # type: ignore[call-overload]
        arr.flags.writeable = False
        return arr
    mv = memoryview(buf).cast("B").toreadonly()
    (nbuf,) = struct.unpack_from("<I", mv, 0)
    lengths = struct.unpack_from(f"<{nbuf}Q", mv, 4)
    stream_start = 4 + 8 * nbuf
    stream = mv[stream_start:meta_len]
    views = []
    offset = meta_len
    for length in lengths:
        offset = _pad(ptr, offset)
        views.append(mv[offset : offset + length])
        offset += length
    return pickle.loads(stream, buffers=views)
