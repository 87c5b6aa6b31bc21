"""A student's code in a process of its own, answering the grader in plain data only.

A grader that runs a student's code in its own interpreter trusts everything
that code can reach: a notebook that sets ``exercises.check_quantizer =
lambda *a, **k: True``, patches ``numpy.allclose`` or rewrites an answer file
grades itself.  Here the student's code runs in a **worker**, a fresh
``python`` started by the grader (its own session, so the grader can kill it
and every child it started); the checks run in the grader's process, which
no student code ever enters.  The two talk over a pair of pipes, and every
message is *plain data*: ``None``, booleans, numbers, strings, lists, tuples,
dicts with string keys, bytes and numeric NumPy arrays (written with
``numpy.save`` and read back with ``allow_pickle=False``: nothing the worker
sends can run code in the grader).

The grader asks the worker to run code (a notebook's cells, or a source
file), then to describe a name (its value as data, or "a function"), or to
call a function with data and send back the result.  While a call runs the
worker may call back into **remote objects** the grader lent it (the attack
tasks' ``defence``): only the methods the grader listed, each answered in
plain data, each counted where the student cannot reach.  Every request has
a wall-clock deadline; past it the worker's whole process group is killed.

This file is also the worker's program (``python sandbox.py --in FD --out
FD``): it imports only the standard library and NumPy, so a worker starts in
a fraction of a second; what the student's code imports is its own affair.
"""
from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

# A message is at most this large (a CIFAR-10 batch of 1,000 float32 images is 12 MB).
MAX_MESSAGE = 512 * 2**20
_NUMERIC = "biuf"  # the array kinds that travel: bool, signed, unsigned, float


class ProtocolError(Exception):
    """A message that is not plain data, too large, or cut short."""


class RemoteError(Exception):
    """What the worker's code sees when a call into a grader's object is refused or fails."""


class WorkerError(Exception):
    """The worker failed to answer: it died, timed out or sent garbage (``kind`` says which)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# --- plain data on the wire ------------------------------------------------------------


def _encode(obj: object, blobs: list[bytes], remote: Callable[[object, list], dict] | None = None) -> object:
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
        return {"__list__" if isinstance(obj, list) else "__tuple__": [_encode(v, blobs, remote) for v in obj]}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise ProtocolError("a dict is plain data only with string keys.")
        return {"__dict__": {k: _encode(v, blobs, remote) for k, v in obj.items()}}
    if remote is not None:
        return remote(obj, blobs)
    raise ProtocolError(f"a {type(obj).__name__} is not plain data (numbers, strings, lists, dicts, arrays).")


def _decode(obj: object, blobs: list[bytes], remote: Callable[[dict, list], object] | None = None) -> object:
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
            items = [_decode(v, blobs, remote) for v in value]
            return items if tag == "__list__" else tuple(items)
        if tag == "__dict__" and isinstance(value, dict):
            return {str(k): _decode(v, blobs, remote) for k, v in value.items()}
    raise ProtocolError(f"not plain data: {str(obj)[:80]}")


def pack(message: Mapping, remote: Callable[[object, list], dict] | None = None) -> bytes:
    """One message as bytes: a JSON header (the data, arrays by index) and the arrays' ``.npy`` bytes."""
    blobs: list[bytes] = []
    body = {k: _encode(v, blobs, remote) if k in ("value", "args", "kwargs") else v for k, v in message.items()}
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
    return {k: _decode(v, blobs, remote) if k in ("value", "args", "kwargs") else v for k, v in body.items()}


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


# --- the grader's side ------------------------------------------------------------------


class RemoteFunction:
    """A function of the worker's namespace, called from the grader with data; it answers in data.

    ``limit_s`` is the wall-clock limit of one call (the attack tasks set it
    with :meth:`limited`); :attr:`seconds` is the last call's wall time.
    """

    def __init__(self, box: Sandbox, name: str, limit_s: float):
        self.box, self.name, self.limit_s, self.seconds = box, name, limit_s, 0.0

    def limited(self, limit_s: float) -> RemoteFunction:
        return RemoteFunction(self.box, self.name, limit_s)

    def __call__(self, *args: object, **kwargs: object) -> object:
        start = time.monotonic()
        try:
            return self.box.call(self.name, args, kwargs, self.limit_s)
        finally:
            self.seconds = time.monotonic() - start

    def __repr__(self) -> str:
        return f"<the student's function {self.name}>"


class Sandbox:
    """A worker process and the grader's end of its pipes.  Use as a context manager (the worker is killed)."""

    def __init__(self, cwd: str | os.PathLike, log: str | os.PathLike, call_limit_s: float = 600,
                 env: Mapping[str, str] | None = None):
        to_child, self._to_child = os.pipe()
        self._from_child, from_child = os.pipe()
        self.log, self.call_limit_s = Path(log), call_limit_s
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-u", str(Path(__file__).resolve()), "--in", str(to_child),
                 "--out", str(from_child), "--path", str(Path(__file__).resolve().parents[2])],
                pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                cwd=cwd, env={**os.environ, "MPLBACKEND": "Agg", **(env or {})}, start_new_session=True)
        os.close(to_child)
        os.close(from_child)
        self._remotes: dict[int, tuple[object, tuple[str, ...]]] = {}
        self._lend_hook: Callable[[object, list], dict] | None = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the worker and everything it started (its process group), close the pipes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass

    def lend(self, obj: object, methods: tuple[str, ...], attrs: Mapping[str, object], blobs: list) -> dict:
        """``obj`` as a remote object: the worker may call ``methods`` on it and read ``attrs`` (data)."""
        handle = len(self._remotes)
        self._remotes[handle] = (obj, tuple(methods))
        return {"__remote__": handle, "methods": list(methods), "attrs": _encode(dict(attrs), blobs)}

    def request(self, message: Mapping, limit_s: float) -> dict:
        """Send one request; serve the worker's callbacks until it answers; return the answer.

        Raises :class:`WorkerError` when the worker dies, overruns ``limit_s``
        (it is then killed) or answers with something that is not plain data.
        """
        remote = self._lend_hook
        deadline = time.monotonic() + limit_s
        try:
            write_message(self._to_child, pack(message, remote))
            while True:
                reply = unpack(read_message(self._from_child, deadline))
                if reply.get("op") != "callback":
                    return reply
                write_message(self._to_child, pack(self._serve(reply)))
        except TimeoutError:
            self.close()
            raise WorkerError("timeout", f"did not finish within {limit_s:g} s") from None
        except (EOFError, BrokenPipeError, OSError):
            self.proc.poll()
            raise WorkerError("died", f"the process ended (exit code {self.proc.returncode})") from None
        except ProtocolError as e:
            self.close()
            raise WorkerError("garbage", f"sent something that is not plain data: {e}") from None

    def _serve(self, reply: dict) -> dict:
        handle, method = reply.get("handle"), reply.get("method")
        if handle not in self._remotes or method not in self._remotes[handle][1]:
            return {"op": "callback_error", "message": f"no method {method!r} to call."}
        obj = self._remotes[handle][0]
        try:
            value = getattr(obj, method)(*reply.get("args", ()), **reply.get("kwargs", {}))
            return {"op": "callback_result", "value": value}
        except Exception as e:  # the object refused (a bad input, the budget): the student's code is told why
            return {"op": "callback_error", "message": f"{type(e).__name__}: {e}"}

    def run_cells(self, cells: list[str], limit_s: float) -> list[str]:
        """Run a notebook's code cells in order (IPython syntax); return one line per cell that raised."""
        return self.request({"op": "run_cells", "value": list(cells)}, limit_s).get("errors", [])

    def run_source(self, source: str, limit_s: float) -> str:
        """Run Python source in the worker's namespace; '' or the error it raised."""
        return self.request({"op": "run_source", "value": source}, limit_s).get("error", "")

    def lookup(self, name: str) -> object:
        """A name of the worker's namespace: its value (plain data), a :class:`RemoteFunction`, or a module.

        A module is imported here by its name (only ``empir_lib``, ``numpy``,
        ``math``), never handed over; anything else that is not data raises
        ``NameError`` / ``TypeError`` with the reason.
        """
        reply = self.request({"op": "describe", "name": name}, 60)
        kind = reply.get("kind")
        if kind == "missing":
            raise NameError(f"name {name!r} is not defined")
        if kind == "callable":
            return RemoteFunction(self, name, self.call_limit_s)
        if kind == "module":
            module = str(reply.get("module", ""))
            if module.split(".")[0] not in ("empir_lib", "numpy", "math"):
                raise TypeError(f"{name} is the module {module}, which the grader does not import.")
            return importlib.import_module(module)
        if kind == "data":
            return reply.get("value")
        raise TypeError(f"{name} is {reply.get('message', 'not plain data')}")

    def call(self, name: str, args: tuple, kwargs: dict, limit_s: float) -> object:
        """Call the worker's function ``name``; return its result (data) or raise what it raised, as text."""
        self._lend_hook = self._argument
        try:
            reply = self.request({"op": "call", "name": name, "args": list(args), "kwargs": dict(kwargs)}, limit_s)
        finally:
            self._lend_hook = None
        if reply.get("op") == "error":
            raise RemoteError(str(reply.get("message", "failed")))
        return reply.get("value")

    def _argument(self, obj: object, blobs: list) -> dict:
        # What may be handed to the student's function besides data: a lent object, or a Keras model
        # (saved to a file the worker loads: the chapter 2 and 10 checks pass one).
        lend = getattr(obj, "lend_to_sandbox", None)
        if callable(lend):
            return self.lend(obj, *lend(), blobs)
        if hasattr(obj, "save") and hasattr(obj, "layers"):
            path = Path(self.log).with_name(f"model-{len(self._remotes)}.keras")
            obj.save(path)
            return {"__remote__": -1, "keras": str(path)}
        raise ProtocolError(f"a {type(obj).__name__} cannot be handed to the student's code.")


# --- the worker's side ------------------------------------------------------------------


class _Remote:
    """A grader's object as the worker sees it: its data attributes, and methods that call the grader."""

    __slots__ = ("_handle", "_attrs", "_methods", "_link")

    def __init__(self, handle: int, attrs: dict, methods: list, link: _Worker):
        for k, v in (("_handle", handle), ("_attrs", attrs), ("_methods", tuple(methods)), ("_link", link)):
            object.__setattr__(self, k, v)

    def __getattr__(self, name: str) -> object:
        attrs, methods = object.__getattribute__(self, "_attrs"), object.__getattribute__(self, "_methods")
        if name in attrs:
            return attrs[name]
        if name in methods:
            link, handle = object.__getattribute__(self, "_link"), object.__getattribute__(self, "_handle")
            return lambda *args, **kwargs: link.callback(handle, name, args, kwargs)
        raise AttributeError(f"the defence has no attribute {name!r}; it offers "
                             f"{', '.join(sorted([*attrs, *methods]))}.")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("the defence is read-only: it lives in the grader's process, not yours.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("the defence is read-only: it lives in the grader's process, not yours.")

    def __dir__(self) -> list[str]:
        return sorted([*object.__getattribute__(self, "_attrs"), *object.__getattribute__(self, "_methods")])


class _Worker:
    def __init__(self, fd_in: int, fd_out: int):
        self.fd_in, self.fd_out = fd_in, fd_out
        self.namespace: dict = {"__name__": "__main__"}
        self.shell = None

    def send(self, message: Mapping) -> None:
        plain = {k: _plain(v) if k in ("value", "args", "kwargs") else v for k, v in message.items()}
        write_message(self.fd_out, pack(plain))

    def receive(self) -> dict:
        return unpack(read_message(self.fd_in), self._remote)

    def _remote(self, obj: dict, blobs: list) -> object:
        if "keras" in obj:
            importlib.import_module("empir_lib.nets.quantize")  # registers the quantised layers
            keras = importlib.import_module("keras")
            return keras.saving.load_model(obj["keras"], compile=False)
        attrs = _decode(obj.get("attrs", {"__dict__": {}}), blobs)
        return _Remote(obj["__remote__"], attrs, obj.get("methods", []), self)

    def callback(self, handle: int, method: str, args: tuple, kwargs: dict) -> object:
        self.send({"op": "callback", "handle": handle, "method": method, "args": list(args), "kwargs": kwargs})
        reply = self.receive()
        if reply.get("op") == "callback_error":
            raise RemoteError(reply.get("message", "refused"))
        return reply.get("value")

    def run_cells(self, cells: list[str]) -> dict:
        if self.shell is None:
            shell_mod = importlib.import_module("IPython.core.interactiveshell")
            self.shell = shell_mod.InteractiveShell.instance()
            self.shell.user_ns.update(self.namespace)
            self.namespace = self.shell.user_ns
        errors = []
        for i, src in enumerate(cells):
            result = self.shell.run_cell(src, store_history=False)
            err = result.error_in_exec or result.error_before_exec
            if err is not None:
                errors.append(f"cell {i + 1}: {type(err).__name__}: {err}")
        return {"op": "done", "errors": errors}

    def describe(self, name: str) -> dict:
        if name not in self.namespace:
            return {"op": "described", "kind": "missing"}
        value = self.namespace[name]
        if isinstance(value, type(sys)):
            return {"op": "described", "kind": "module", "module": value.__name__}
        if callable(value):
            return {"op": "described", "kind": "callable"}
        try:
            return {"op": "described", "kind": "data", "value": _plain(value, top=True)}
        except ProtocolError as e:
            return {"op": "described", "kind": "other", "message": str(e)}

    def serve(self) -> None:
        while True:
            try:
                msg = self.receive()
            except EOFError:
                return
            op = msg.get("op")
            try:
                if op == "run_cells":
                    reply = self.run_cells(msg["value"])
                elif op == "run_source":
                    exec(compile(msg["value"], "<submission>", "exec"), self.namespace)
                    reply = {"op": "done"}
                elif op == "describe":
                    reply = self.describe(msg["name"])
                elif op == "call":
                    fn = self.namespace.get(msg["name"])
                    if not callable(fn):
                        raise NameError(f"no function {msg['name']!r}")
                    reply = {"op": "result", "value": fn(*msg.get("args", ()), **msg.get("kwargs", {}))}
                else:
                    reply = {"op": "error", "message": f"unknown request {op!r}"}
            except BaseException as e:  # the student's code failed: that is an answer to send, not a crash
                if isinstance(e, KeyboardInterrupt):
                    raise
                tb = traceback.extract_tb(e.__traceback__)
                where = next((f" (line {f.lineno})" for f in reversed(tb) if f.filename.startswith("<")), "")
                reply = {"op": "error", "message": f"{type(e).__name__}: {e}{where}",
                         "error": f"{type(e).__name__}: {e}"}
            try:
                self.send(reply)
            except ProtocolError as e:
                self.send({"op": "error", "message": f"the result is not plain data: {e}"})


def _plain(obj: object, top: bool = False) -> object:
    """A student's value as plain data: tensors become arrays (``.numpy()``), the rest is refused by pack."""
    numpy_fn = getattr(obj, "numpy", None)
    if callable(numpy_fn) and not isinstance(obj, np.ndarray):
        obj = numpy_fn()
    if isinstance(obj, (list, tuple)):
        obj = type(obj)(_plain(v) for v in obj)
    elif isinstance(obj, dict):
        obj = {k: _plain(v) for k, v in obj.items()}
    if top:
        _encode(obj, [])  # refuse what will not travel now, with the reason
    if isinstance(obj, (list, tuple, dict, np.ndarray, bytes, str, int, float, bool, type(None), np.generic)):
        return obj
    raise ProtocolError(f"a {type(obj).__name__} is not plain data (numbers, strings, lists, dicts, arrays).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A grader's worker: runs a student's code, answers in data.")
    parser.add_argument("--in", dest="fd_in", type=int, required=True)
    parser.add_argument("--out", dest="fd_out", type=int, required=True)
    parser.add_argument("--path", default=None, help="the library's root, put on sys.path")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]  # the script's folder shadows names
    if args.path:
        sys.path.insert(0, args.path)
    sys.path.insert(0, os.getcwd())
    _Worker(args.fd_in, args.fd_out).serve()


if __name__ == "__main__":
    main()
