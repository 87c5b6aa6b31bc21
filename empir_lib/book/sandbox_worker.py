"""The worker: the process a student's code runs in, answering the grader in plain data.

Started by :class:`empir_lib.book.sandbox.Sandbox` as a fresh interpreter; it
runs what it is sent (a notebook's cells with IPython's syntax, or Python
source) in one namespace, then answers requests: describe a name, call a
function with data.  While a call runs, the student's code may call back
into the grader's lent objects (:class:`_Remote`, read-only).  It imports only
the standard library and NumPy itself, so it starts in a fraction of a
second; what the student's code imports is its own affair.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Mapping

import numpy as np

from .wire import ProtocolError, RemoteError, decode, encode, pack, read_message, unpack, write_message


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
        attrs = decode(obj.get("attrs", {"__dict__": {}}), blobs)
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
            # A plain shell has no GUI event loop; "%matplotlib inline" asks for one (figures go nowhere here).
            self.shell.enable_gui = lambda gui=None: None
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
        encode(obj, [])  # refuse what will not travel now, with the reason
    if isinstance(obj, (list, tuple, dict, np.ndarray, bytes, str, int, float, bool, type(None), np.generic)):
        return obj
    raise ProtocolError(f"a {type(obj).__name__} is not plain data (numbers, strings, lists, dicts, arrays).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A grader's worker: runs a student's code, answers in data.")
    parser.add_argument("--in", dest="fd_in", type=int, required=True)
    parser.add_argument("--out", dest="fd_out", type=int, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.getcwd())  # the submission's own files, as in a notebook
    _Worker(args.fd_in, args.fd_out).serve()
