"""msgpack with numpy arrays, byte-compatible with openpi's ``openpi_client.msgpack_numpy``.

On the wire an array is a msgpack map with binary keys::

    {b"__ndarray__": True, b"data": <raw C-order bytes>, b"dtype": "<f4", b"shape": [2, 3]}

and a numpy scalar is ``{b"__npgeneric__": True, b"data": <python scalar>, b"dtype": "<f4"}``. This is what
openpi's client and server send, so either side of lbva talks to either side of openpi.

Unlike msgpack-numpy, nothing here ever unpickles: object, void (structured) and complex arrays are refused
on both packing and unpacking, and an incoming array map is checked (dtype, shape, byte count) before a
view of its bytes is made. Decoded arrays are read-only views of the received message (zero copy); call
``np.array(x)`` for a writable copy.

Imports only numpy and msgpack (no torch), and runs on Python >= 3.10 with numpy 1.24 to 2.x.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

__all__ = ["MsgpackNumpyError", "Packer", "pack_array", "packb", "unpack_array", "unpackb"]

# dtype kinds that travel: bool, signed/unsigned integers, floats, fixed-width byte/unicode strings.
ALLOWED_KINDS = frozenset("biufSU")
_MAX_NDIM = 32


class MsgpackNumpyError(ValueError):
    """A value that cannot be packed, or a message whose array maps are malformed or unsafe."""


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise MsgpackNumpyError(
            f"{what}: dtype {dtype.str!r} (kind {dtype.kind!r}) is not allowed; only bool, integer, float and "
            "fixed-width string arrays travel (object, structured and complex arrays are refused, never unpickled). "
            "Convert the value to a plain numeric array before sending it."
        )
    if dtype.itemsize == 0:
        raise MsgpackNumpyError(f"{what}: dtype {dtype.str!r} has zero item size; use a sized dtype such as '<U8'.")


def pack_array(obj: Any) -> Any:
    """msgpack ``default`` hook: numpy arrays and scalars to openpi's maps; anything else is refused."""
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype, "array")
        return {
            b"__ndarray__": True,
            b"data": obj.tobytes(),  # C order whatever the array's layout
            b"dtype": obj.dtype.str,
            b"shape": obj.shape,
        }
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype, "numpy scalar")
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(
        f"cannot serialize {type(obj).__name__!r}: messages hold dicts, lists, str, bytes, int, float, bool, None "
        "and numpy arrays/scalars"
    )


def _get(obj: dict, name: str) -> Any:
    # openpi packs binary keys; accept text keys too (clients written in other languages send those).
    key = name.encode()
    if key in obj:
        return obj[key]
    if name in obj:
        return obj[name]
    raise MsgpackNumpyError(f"array map lacks its {name!r} entry (keys: {sorted(map(str, obj))})")


def _parse_dtype(raw: Any, what: str) -> np.dtype:
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    if not isinstance(raw, str) or len(raw) > 16:
        raise MsgpackNumpyError(f"{what}: dtype must be a short numpy type string such as '<f4', got {raw!r}")
    try:
        dtype = np.dtype(raw)
    except (TypeError, ValueError) as e:
        raise MsgpackNumpyError(f"{what}: dtype {raw!r} is not a numpy type string ({e})") from None
    _check_dtype(dtype, what)
    return dtype


def unpack_array(obj: dict) -> Any:
    """msgpack ``object_hook``: openpi's array/scalar maps back to numpy; other maps unchanged."""
    if b"__ndarray__" in obj or "__ndarray__" in obj:
        dtype = _parse_dtype(_get(obj, "dtype"), "array")
        shape = _get(obj, "shape")
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) > _MAX_NDIM
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise MsgpackNumpyError(f"array: shape must be a list of at most {_MAX_NDIM} non-negative ints, got {shape!r}")
        data = _get(obj, "data")
        if not isinstance(data, (bytes, bytearray)):
            raise MsgpackNumpyError(f"array: data must be binary, got {type(data).__name__}")
        count = 1
        for d in shape:
            count *= d
        if count * dtype.itemsize != len(data):
            raise MsgpackNumpyError(
                f"array: shape {list(shape)} of dtype {dtype.str!r} needs {count * dtype.itemsize} bytes, "
                f"the message carries {len(data)}"
            )
        return np.frombuffer(data, dtype=dtype, count=count).reshape(shape)
    if b"__npgeneric__" in obj or "__npgeneric__" in obj:
        dtype = _parse_dtype(_get(obj, "dtype"), "numpy scalar")
        data = _get(obj, "data")
        if not isinstance(data, (bool, int, float, str, bytes)):
            raise MsgpackNumpyError(f"numpy scalar: data must be a plain scalar, got {type(data).__name__}")
        try:
            return dtype.type(data)
        except (TypeError, ValueError, OverflowError) as e:
            raise MsgpackNumpyError(f"numpy scalar: {data!r} is not a valid {dtype.str!r} ({e})") from None
    return obj


def Packer(**kwargs: Any) -> msgpack.Packer:  # noqa: N802 - mirrors openpi's ``Packer()``
    """A reusable ``msgpack.Packer`` that packs numpy values as openpi does."""
    return msgpack.Packer(default=pack_array, **kwargs)


def packb(obj: Any, **kwargs: Any) -> bytes:
    """Serialize ``obj`` (dicts, lists, scalars, numpy arrays) to msgpack bytes."""
    return msgpack.packb(obj, default=pack_array, **kwargs)


def unpackb(data: bytes, **kwargs: Any) -> Any:
    """Deserialize msgpack bytes; openpi's array maps become read-only numpy arrays.

    Raises :class:`MsgpackNumpyError` for anything that is not one complete, well-formed msgpack value.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MsgpackNumpyError(f"expected msgpack bytes, got {type(data).__name__}")
    try:
        return msgpack.unpackb(data, object_hook=unpack_array, **kwargs)
    except MsgpackNumpyError:
        raise
    except Exception as e:  # msgpack raises ExtraData, FormatError, StackError, ValueError, TypeError...
        raise MsgpackNumpyError(f"not a valid msgpack message ({type(e).__name__}: {e})") from None
