"""The sandbox's wire format: plain data only, never a pickle.

A message is a JSON header (the data, with each array or bytes object by
index) followed by the arrays' ``.npy`` bytes, read back with
``allow_pickle=False``; numbers travel as text, so an integer keeps its size.
Only ``None``, booleans, numbers, strings, lists, tuples, dicts with string
keys, bytes and numeric arrays pass; anything else is refused with the
reason (:class:`ProtocolError`).  A remote object (a grader's object lent to
the worker, :mod:`empir_lib.book.sandbox`) travels as a handle through the
``remote`` hooks.  Used by both ends: :mod:`empir_lib.book.sandbox` (the
grader) and :mod:`empir_lib.book.sandbox_worker` (the student's process).
"""
from __future__ import annotations

import io
import json
import os
import select
import struct
import time
from collections.abc import Callable, Mapping

import numpy as np

# A message is at most this large (a CIFAR-10 batch of 1,000 float32 images is 12 MB).
MAX_MESSAGE = 512 * 2**20
_NUMERIC = "biuf"  # the array kinds that travel: bool, signed, unsigned, float


class ProtocolError(Exception):
    """A message that is not plain data, too large, or cut short."""


class RemoteError(Exception):
    """What the worker's code sees when a call into a grader's object is refused or fails."""


def encode(obj: object, blobs: list[bytes], remote: Callable[[object, list], dict] | None = None) -> object:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return {"__int__": str(int(obj))}
    if isinstance(obj, (float, np.floating)):
        return {"__float__": repr(float(obj))}
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (bytes, bytearray)):
        blobs.append(bytes(obj))
        return {"__bytes__": len(blobs) - 1}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _NUMERIC:
            raise ProtocolError(f"an array of dtype {obj.dtype} is not plain data; send numbers.")
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(obj), allow_pickle=False)
        blobs.append(buf.getvalue())
        return {"__array__": len(blobs) - 1}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__": [encode(v, blobs, remote) for v in obj]}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise ProtocolError("a dict is plain data only with string keys.")
        return {"__dict__": {k: encode(v, blobs, remote) for k, v in obj.items()}}
    if remote is not None:
        return remote(obj, blobs)
    raise ProtocolError(f"a {type(obj).__name__} is not plain data (numbers, strings, lists, dicts, arrays).")


def decode(obj: object, blobs: list[bytes], remote: Callable[[dict, list], object] | None = None) -> object:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, dict) and "__remote__" in obj and remote is not None:
        return remote(obj, blobs)
    if isinstance(obj, dict) and len(obj) == 1:
        ((tag, value),) = obj.items()
        if tag == "__int__" and isinstance(value, str):
            return int(value)
        if tag == "__float__" and isinstance(value, str):
            return float(value)
        if tag == "__bytes__" and isinstance(value, int) and 0 <= value < len(blobs):
            return blobs[value]
        if tag == "__array__" and isinstance(value, int) and 0 <= value < len(blobs):
            try:
                arr = np.load(io.BytesIO(blobs[value]), allow_pickle=False)
            except Exception as e:  # a malformed .npy is the sender's fault, named as such
                raise ProtocolError(f"an array that does not load: {e}") from None
            if not isinstance(arr, np.ndarray) or arr.dtype.kind not in _NUMERIC:
                raise ProtocolError("an array that is not numeric.")
            return arr
        if tag in ("__list__", "__tuple__") and isinstance(value, list):
            items = [decode(v, blobs, remote) for v in value]
            return items if tag == "__list__" else tuple(items)
        if tag == "__dict__" and isinstance(value, dict):
            return {str(k): decode(v, blobs, remote) for k, v in value.items()}
    raise ProtocolError(f"not plain data: {str(obj)[:80]}")


def pack(message: Mapping, remote: Callable[[object, list], dict] | None = None) -> bytes:
    """One message as bytes: a JSON header (the data, arrays by index) and the arrays' ``.npy`` bytes."""
    blobs: list[bytes] = []
    body = {k: encode(v, blobs, remote) if k in ("value", "args", "kwargs") else v for k, v in message.items()}
    header = json.dumps({"body": body, "blobs": [len(b) for b in blobs]}).encode()
    out = struct.pack(">I", len(header)) + header + b"".join(blobs)
    if len(out) > MAX_MESSAGE:
        raise ProtocolError(f"a message of {len(out) / 2**20:.0f} MB; the limit is {MAX_MESSAGE / 2**20:.0f} MB.")
    return struct.pack(">Q", len(out)) + out


def unpack(payload: bytes, remote: Callable[[dict, list], object] | None = None) -> dict:
    """The message :func:`pack` wrote, its data decoded (never unpickled)."""
    try:
        (n,) = struct.unpack(">I", payload[:4])
        header = json.loads(payload[4:4 + n])
        sizes, body = header["blobs"], header["body"]
        if not isinstance(body, dict) or not all(isinstance(s, int) and s >= 0 for s in sizes):
            raise ValueError("bad header")
    except (ValueError, KeyError, TypeError, struct.error) as e:
        raise ProtocolError(f"a message that is not this protocol's ({e}).") from None
    blobs, at = [], 4 + n
    for s in sizes:
        blobs.append(payload[at:at + s])
        at += s
    if at != len(payload):
        raise ProtocolError("a message whose arrays do not add up.")
    return {k: decode(v, blobs, remote) if k in ("value", "args", "kwargs") else v for k, v in body.items()}


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_message(fd: int, deadline: float | None = None) -> bytes:
    (n,) = struct.unpack(">Q", _read_exact(fd, 8, deadline))
    if n > MAX_MESSAGE:
        raise ProtocolError(f"a message of {n} bytes announced; the limit is {MAX_MESSAGE}.")
    return _read_exact(fd, n, deadline)


def write_message(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
