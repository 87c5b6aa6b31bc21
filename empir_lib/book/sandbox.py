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

The worker's program is :mod:`empir_lib.book.sandbox_worker`; the wire
format is :mod:`empir_lib.book.wire`.
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .wire import ProtocolError, RemoteError, encode, pack, read_message, unpack, write_message

__all__ = ["ProtocolError", "RemoteError", "RemoteFunction", "Sandbox", "WorkerError"]

ROOT = Path(__file__).resolve().parents[2]
# The worker: a fresh interpreter (-I: no PYTHONPATH, no user site, no current folder on the path), unbuffered,
# with this checkout's library first on its path.
BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from empir_lib.book.sandbox_worker import main; main()")


class WorkerError(Exception):
    """The worker failed to answer: it died, timed out or sent garbage (``kind`` says which)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


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
                [sys.executable, "-I", "-u", "-c", BOOT, str(ROOT), "--in", str(to_child), "--out", str(from_child)],
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
        return {"__remote__": handle, "methods": list(methods), "attrs": encode(dict(attrs), blobs)}

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
