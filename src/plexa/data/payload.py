"""How a Python object is laid out in a link's shared-memory sample, and read back in place.

Two layouts, told apart by the ``layout`` key in the sample header:

* an array (``layout`` != 0): a numpy array of any dtype that holds no Python objects
  (numbers, datetime64 and timedelta64 of any unit, bytes and str, structured records): a
  small descriptor, then the raw data at a 64-byte aligned offset. Read back as a read-only
  view, no copy. ``layout`` is a 64-bit hash of the descriptor, so a consumer that has seen
  the layout before finds its shape and dtype with one integer lookup instead of parsing the
  descriptor again.
* a pickle (``layout`` == 0): anything else, as pickle protocol 5 with its out-of-band
  buffers after the pickle stream, each 64-byte aligned, so arrays nested in dicts or lists
  are not copied either.

The descriptor is ``u16 len(dtype)  u32 ndim  dtype  u64 shape[ndim]``, where ``dtype`` is
numpy's own description of the dtype (``<M8[10ms]``, or a list of fields for records), of
any length.

Views handed out keep the sample they point into alive (it is anchored on the ctypes buffer
every view derives from), so a view can never show another message's data.
"""

from __future__ import annotations

import ast
import ctypes
import hashlib
import pickle
import struct
import warnings
from typing import Any

import numpy as np
import numpy.lib.format as npformat

from plexa.errors import PayloadError

__all__ = [
    "ALIGN",
    "PICKLE",
    "Encoded",
    "array_meta",
    "decode",
    "dtype_text",
    "encode",
    "layout_key",
    "parse_meta",
    "write",
]

PICKLE = 0
"""The ``layout`` of a pickled payload."""
ALIGN = 64
_DESC = struct.Struct("<HI")


def _pad(ptr: int, offset: int) -> int:
    """Smallest offset >= ``offset`` at which ``ptr + offset`` is 64-byte aligned."""
    return offset + (-(ptr + offset) % ALIGN)


class Encoded:
    """An object ready to be written: its layout key, descriptor bytes and raw buffers."""

    __slots__ = ("buffers", "layout", "meta", "nbytes")

    def __init__(self, layout: int, meta: bytes, buffers: list[memoryview]) -> None:
        self.layout = layout
        self.meta = meta
        self.buffers = buffers
        self.nbytes = len(meta) + sum(b.nbytes + ALIGN for b in buffers) + ALIGN


_texts: dict[np.dtype[Any], bytes | str] = {}


def _parse_dtype(text: str) -> np.dtype[Any]:
    if text.startswith("["):  # a record: numpy's list of fields, plain literals only
        return npformat.descr_to_dtype(ast.literal_eval(text))
    return np.dtype(text)


def dtype_text(dtype: np.dtype[Any]) -> bytes:
    """How ``dtype`` is written in a descriptor; raises :class:`PayloadError` (with the
    reason) for a dtype whose items cannot be sent as raw bytes, such as ``object``."""
    found = _texts.get(dtype) or _known(dtype)
    if isinstance(found, str):
        raise PayloadError(found)
    return found


def _describe(dtype: np.dtype[Any]) -> bytes | str:
    """The descriptor text of ``dtype``, or why it has none."""
    if dtype.hasobject:
        return f"dtype {dtype} holds Python objects, not raw data"
    if dtype.itemsize == 0:
        return f"dtype {dtype} has items of size 0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "metadata on a dtype is not saved": as intended
        descr = npformat.dtype_to_descr(dtype)
    text = descr if isinstance(descr, str) else repr(descr)
    try:
        same = _parse_dtype(text) == dtype
    except (ValueError, TypeError, SyntaxError):
        same = False
    if not same:
        return f"dtype {dtype} cannot be described to the receiving process"
    if len(text) > 0xFFFF:
        return f"dtype {dtype} has a description over 64 KB"
    return text.encode()


def _known(dtype: np.dtype[Any]) -> bytes | str:
    """``dtype``'s descriptor text or why it has none, remembered."""
    if len(_texts) > 256:
        _texts.clear()
    found = _texts[dtype] = _describe(dtype)
    return found


def array_meta(shape: tuple[int, ...], dtype: np.dtype[Any]) -> bytes:
    """The descriptor of an array payload (raises :class:`PayloadError`, see dtype_text)."""
    text = dtype_text(dtype)
    return _DESC.pack(len(text), len(shape)) + text + struct.pack(f"<{len(shape)}Q", *shape)


def parse_meta(meta: bytes) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """The shape and dtype an array descriptor describes."""
    size, ndim = _DESC.unpack_from(meta)
    text = meta[_DESC.size : _DESC.size + size].decode()
    shape = tuple(struct.unpack_from(f"<{ndim}Q", meta, _DESC.size + size))
    return shape, _parse_dtype(text)


def layout_key(meta: bytes) -> int:
    """The nonzero 64-bit key of an array descriptor (the same in every process)."""
    digest = hashlib.blake2b(meta, digest_size=8).digest()
    return int.from_bytes(digest, "little") | 1


_keys: dict[bytes, int] = {}


def encode(obj: object) -> Encoded:
    """Lay ``obj`` out for a sample without copying array data.

    Arrays whose dtype holds objects are pickled. Raises whatever pickling ``obj`` raises
    (the output port turns it into a :class:`PayloadError` that names the port)."""
    if type(obj) is np.ndarray and type(_texts.get(obj.dtype) or _known(obj.dtype)) is bytes:
        if not obj.flags.c_contiguous:  # a slice, say: one copy here, still a view there
            obj = np.ascontiguousarray(obj)
        meta = array_meta(obj.shape, obj.dtype)
        key = _keys.get(meta)
        if key is None:
            if len(_keys) > 256:
                _keys.clear()
            key = _keys[meta] = layout_key(meta)
        return Encoded(key, meta, [_bytes_of(obj)])
    raw: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(obj, protocol=5, buffer_callback=raw.append)
    views = [b.raw() for b in raw]
    head = struct.pack(f"<I{len(views)}Q", len(views), *(v.nbytes for v in views))
    return Encoded(PICKLE, head + stream, views)


def _bytes_of(arr: np.ndarray[Any, Any]) -> memoryview:
    """The raw bytes of a C-contiguous array, without a copy."""
    if not arr.size:  # a memoryview cannot cast a shape with a zero in it
        return memoryview(b"")
    try:
        return memoryview(arr).cast("B")  # type: ignore[arg-type]
    except (ValueError, TypeError):  # datetime64, timedelta64 (and records holding them)
        return memoryview(arr.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


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
    """Where an array payload's data starts."""
    return _pad(ptr, meta_len)


_Layout = tuple[tuple[int, ...], np.dtype[Any], type[ctypes.Array[ctypes.c_uint8]]]
_layouts: dict[int, _Layout] = {}


def decode(layout: int, meta_len: int, sample: Any) -> Any:
    """The message in a received ``sample``: arrays as read-only views into it, which keep
    it alive; anything else unpickled (its out-of-band buffers are views too).

    This runs once per message between a consumer's wake-up and its handler, on caches
    that have gone cold while the consumer slept, so the array path is kept to a few steps.
    """
    ptr = sample.payload_ptr
    if not layout:
        return _unpickle(meta_len, ptr, sample)
    found = _layouts.get(layout)
    if found is None:
        found = _learn(layout, meta_len, ptr)
    shape, dtype, buf_type = found
    buf = buf_type.from_address(ptr + meta_len + (-(ptr + meta_len) % ALIGN))
    buf._plexa_sample = sample  # type: ignore[attr-defined]
    return np.ndarray(shape, dtype, memoryview(buf).toreadonly())


def _learn(layout: int, meta_len: int, ptr: int) -> _Layout:
    """Parse an array descriptor not seen before and remember it under its key."""
    meta = ctypes.string_at(ptr, meta_len)
    if layout_key(meta) != layout:
        raise PayloadError(f"corrupt array descriptor in a received message: {meta[:80]!r}")
    try:
        shape, dtype = parse_meta(meta)
    except (ValueError, TypeError, SyntaxError, struct.error, UnicodeDecodeError) as exc:
        raise PayloadError(f"unreadable array descriptor {meta[:80]!r}: {exc}") from exc
    nbytes = dtype.itemsize
    for dim in shape:
        nbytes *= dim
    if len(_layouts) > 256:
        _layouts.clear()
    found = _layouts[layout] = (shape, dtype, ctypes.c_uint8 * nbytes)
    return found


def _unpickle(meta_len: int, ptr: int, sample: Any) -> Any:
    size = sample.header.number_of_elements
    buf = (ctypes.c_uint8 * size).from_address(ptr)
    buf._plexa_sample = sample
    mv = memoryview(buf).cast("B").toreadonly()
    (nbuf,) = struct.unpack_from("<I", mv, 0)
    lengths = struct.unpack_from(f"<{nbuf}Q", mv, 4)
    stream = mv[4 + 8 * nbuf : meta_len]
    views = []
    offset = meta_len
    for length in lengths:
        offset = _pad(ptr, offset)
        views.append(mv[offset : offset + length])
        offset += length
    return pickle.loads(stream, buffers=views)
