"""The sandbox: a student's code in its own process, answering in plain data only.

The wire format refuses anything but plain data (never a pickle); the worker
runs code, describes names, calls functions and calls back into lent,
read-only objects; a worker past its deadline is killed with every process it
started; what the student's code prints goes to the log, not the protocol.
"""
from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest

from empir_lib.book import sandbox, wire


def test_plain_data_round_trips_and_everything_else_is_refused():
    value = {"a": [1, 2.5, None, True, "s", b"\x00\x01", (np.arange(3), np.float32(2))], "big": 2**70}
    got = wire.unpack(wire.pack({"op": "x", "value": value})[8:])["value"]
    assert got["a"][:6] == [1, 2.5, None, True, "s", b"\x00\x01"] and got["big"] == 2**70
    assert np.array_equal(got["a"][6][0], np.arange(3)) and got["a"][6][1] == 2.0
    for bad in (object(), np.array([object()]), {1: 2}, lambda: 0):
        with pytest.raises(wire.ProtocolError):
            wire.pack({"value": bad})


def test_a_pickle_in_an_array_blob_is_refused_not_loaded():
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    blob = buf.getvalue()
    header = b'{"body": {"value": {"__array__": 0}}, "blobs": [%d]}' % len(blob)
    payload = len(header).to_bytes(4, "big") + header + blob
    with pytest.raises(wire.ProtocolError, match="does not load"):
        wire.unpack(payload)
    with pytest.raises(wire.ProtocolError):
        wire.unpack(b"\x00\x00\x00\x05hello")


class Lent:
    def lend_to_sandbox(self):
        return ("double",), {"eps": 0.5, "shape": (2, 2)}

    def double(self, x):
        if np.asarray(x).size > 3:
            raise ValueError("at most 3 numbers")
        return 2 * np.asarray(x)


SOURCE = """
import numpy as np
answer = {"levels": [-1.0, 1.0], "arr": np.ones(2)}
model = object()

def f(d, x):
    print("printed by the student")
    return d.double(x) + d.eps

def tamper(d):
    d.eps = 99

def spawn_and_hang():
    import subprocess
    p = subprocess.Popen(["sleep", "300"])
    open("child.pid", "w").write(str(p.pid))
    while True:
        pass
"""


def test_worker_answers_in_data_and_calls_back_into_read_only_objects(tmp_path):
    with sandbox.Sandbox(tmp_path, tmp_path / "worker.log") as box:
        assert box.run_source(SOURCE, 30) == ""
        got = box.lookup("answer")
        assert got["levels"] == [-1.0, 1.0] and np.array_equal(got["arr"], np.ones(2))
        with pytest.raises(NameError):
            box.lookup("nothing")
        with pytest.raises(TypeError, match="not plain data"):
            box.lookup("model")
        f = box.lookup("f")
        assert isinstance(f, sandbox.RemoteFunction)
        assert np.array_equal(f(Lent(), np.array([1.0, 2.0])), [2.5, 4.5])
        with pytest.raises(sandbox.RemoteError, match="at most 3 numbers"):
            f(Lent(), np.zeros(5))
        with pytest.raises(sandbox.RemoteError, match="read-only"):
            box.lookup("tamper")(Lent())
    assert "printed by the student" in (tmp_path / "worker.log").read_text()


def test_a_worker_past_its_deadline_is_killed_with_its_children(tmp_path):
    with sandbox.Sandbox(tmp_path, tmp_path / "worker.log") as box:
        box.run_source(SOURCE, 30)
        start = time.monotonic()
        with pytest.raises(sandbox.WorkerError, match="did not finish within 3 s") as info:
            box.lookup("spawn_and_hang").limited(3)()
        assert info.value.kind == "timeout" and time.monotonic() - start < 10
    child = int((tmp_path / "child.pid").read_text())
    time.sleep(0.2)
    stat = f"/proc/{child}/stat"
    # Gone, or a zombie waiting for this container's init to reap it: not running either way.
    assert not os.path.exists(stat) or open(stat).read().rsplit(")", 1)[1].split()[0] == "Z"
