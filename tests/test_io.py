"""escnn_tensor._io: atomic writes (nothing half-written, temporary file removed on failure), checksummed
checkpoints (a flipped byte, a truncated or empty file gives one clear error naming the file; older plain
torch.save files still load) and directory locks (a second holder is refused, told who holds it)."""
import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from escnn_tensor import _io
from escnn_tensor._io import (
    CHECKPOINT_MAGIC,
    CorruptCheckpointError,
    DirectoryLockedError,
    load_checkpoint,
    lock_directory,
    save_checkpoint,
    save_torch,
    write_json,
    write_text,
)


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def _state():
    g = torch.Generator().manual_seed(0)
    return {
        "model": {"w": torch.randn(5, 7, generator=g, dtype=torch.float64), "b": torch.randn(3, generator=g)},
        "epoch": 4,
        "history": [0.5, 0.25],
    }


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])
    assert a["epoch"] == b["epoch"] and a["history"] == b["history"]


# ---- atomic writes ------------------------------------------------------------------------------------------------


def test_write_json_and_text_round_trip_and_leave_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "results.json"  # parent created
    write_json({"a": [1, 2.5], "b": "x"}, path, indent=1)
    assert json.loads(path.read_text()) == {"a": [1, 2.5], "b": "x"}
    write_text(tmp_path / "t.md", "| a |\n")
    assert (tmp_path / "t.md").read_text() == "| a |\n"
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []


def test_atomic_write_fsyncs_the_file_and_the_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_json([1], tmp_path / "x.json")
    assert len(synced) == 2
    assert synced[0].startswith(str(tmp_path / ".x.json.")) and synced[0].endswith(".tmp")  # the temporary file
    assert synced[1] == str(tmp_path)  # the directory, after the rename


def test_unpicklable_object_leaves_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "ck.pt"
    save_torch({"ok": torch.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_torch({"bad": lambda x: x}, path)  # fails inside torch.save, after the temporary file was opened
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint({"bad": lambda x: x}, path)
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


@pytest.mark.parametrize("write", [
    lambda p: write_json({"new": 1}, p),
    lambda p: save_torch({"new": torch.zeros(3)}, p),
    lambda p: save_checkpoint({"new": torch.zeros(3)}, p),
])
def test_failing_rename_removes_the_temporary_file(tmp_path, monkeypatch, write):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old content")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write(path)
    assert path.read_bytes() == b"old content"
    assert _leftovers(tmp_path) == []


def test_interrupt_while_writing_removes_the_temporary_file(tmp_path):
    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write(tmp_path / "x", interrupted)
    assert list(tmp_path.iterdir()) == []


# ---- checksummed checkpoints --------------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(_state(), path)
    assert path.read_bytes().startswith(CHECKPOINT_MAGIC)
    _assert_same(load_checkpoint(path), _state())
    _assert_same(load_checkpoint(path, map_location="cpu", weights_only=True), _state())
    meta = load_checkpoint(path, map_location="meta")
    assert meta["model"]["w"].device.type == "meta" and meta["model"]["w"].shape == (5, 7)
    assert _leftovers(tmp_path) == []


def _tensor_offsets(data: bytes, state) -> list:
    """Where the raw bytes of each tensor of ``state['model']`` lie in ``data`` (found by search)."""
    offsets = []
    for t in state["model"].values():
        raw = t.contiguous().numpy().tobytes()
        at = data.find(raw)
        assert at >= 0 and data.find(raw, at + 1) < 0
        offsets.append(at + len(raw) // 2)
    return offsets


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _assert_one_line_naming(exc_info, path):
    msg = str(exc_info.value)
    assert "\n" not in msg and str(path) in msg, msg
    assert isinstance(exc_info.value, ValueError) and exc_info.value.path == path


def test_one_flipped_byte_in_each_tensor_is_detected(tmp_path):
    """Issue 20 item 1: a byte flipped in each tensor of a checkpoint. A plain torch.save file loads with silently
    changed numbers (the reason for the checksum); save_checkpoint's file is refused in one line naming it."""
    legacy = tmp_path / "legacy.pt"
    torch.save(_state(), legacy)
    for off in _tensor_offsets(legacy.read_bytes(), _state()):
        _flip(legacy, off)
    changed = load_checkpoint(legacy)  # older format: no checksum, loads, but the numbers differ
    assert not torch.equal(changed["model"]["w"], _state()["model"]["w"])
    assert not torch.equal(changed["model"]["b"], _state()["model"]["b"])

    path = tmp_path / "ck.pt"
    save_checkpoint(_state(), path)
    for off in _tensor_offsets(path.read_bytes(), _state()):
        save_checkpoint(_state(), path)
        _flip(path, off)
        with pytest.raises(CorruptCheckpointError, match="checksum") as e:
            load_checkpoint(path)
        _assert_one_line_naming(e, path)


def test_flipped_byte_anywhere_is_detected(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(_state(), path)
    n = len(path.read_bytes())
    for off in list(range(0, n, max(1, n // 97))) + [n - 1]:
        save_checkpoint(_state(), path)
        _flip(path, off)
        with pytest.raises(CorruptCheckpointError) as e:
            load_checkpoint(path)
        _assert_one_line_naming(e, path)


def test_truncated_empty_or_extended_checkpoint_is_detected(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(_state(), path)
    good = path.read_bytes()
    header = good.index(b"\n") + 1
    cases = {
        b"": "empty",
        good[:10]: "truncated",
        good[: header - 1]: "truncated",
        good[:header]: "bytes after the header",
        good[: len(good) // 2]: "bytes after the header",
        good[:-1]: "bytes after the header",
        good + b"\0": "bytes after the header",
    }
    for data, reason in cases.items():
        path.write_bytes(data)
        with pytest.raises(CorruptCheckpointError, match=reason) as e:
            load_checkpoint(path)
        _assert_one_line_naming(e, path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_older_plain_torch_save_checkpoints_load_and_their_damage_is_one_line(tmp_path):
    path = tmp_path / "old.pt"
    torch.save(_state(), path)
    _assert_same(load_checkpoint(path, map_location="cpu"), _state())
    good = path.read_bytes()
    for data in (good[: len(good) // 2], good[:-30], b"not a checkpoint at all"):
        path.write_bytes(data)
        with pytest.raises(CorruptCheckpointError, match="torch.load cannot read it") as e:
            load_checkpoint(path)
        _assert_one_line_naming(e, path)


# ---- directory locks ----------------------------------------------------------------------------------------------


def test_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with lock_directory(tmp_path, owner="run A") as lock_file:
        assert lock_file == tmp_path / ".lock"
        with pytest.raises(DirectoryLockedError) as e:
            with lock_directory(tmp_path, owner="run B"):
                pass
        msg = str(e.value)
        assert "\n" not in msg and str(tmp_path) in msg and f"process {os.getpid()}" in msg and "run A" in msg
    with lock_directory(tmp_path, owner="run B"):  # released at the end of the block
        pass
    with pytest.raises(ZeroDivisionError):
        with lock_directory(tmp_path):
            1 / 0
    with lock_directory(tmp_path):  # released when the block raised
        pass


def test_lock_held_by_another_process_names_it_and_dies_with_it(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from escnn_tensor._io import lock_directory
        with lock_directory({str(tmp_path)!r}, owner="the other run"):
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryLockedError, match=rf"process {proc.pid} .*the other run"):
            with lock_directory(tmp_path):
                pass
    finally:
        proc.kill()  # killed while holding the lock: the kernel releases it
        proc.wait()
    with lock_directory(tmp_path):
        pass


def test_data_cache_writes_through_the_atomic_writer(tmp_path, monkeypatch):
    """The data cache (escnn_tensor.data.load) writes with save_torch: a failing rename leaves no file behind."""
    from escnn_tensor import data

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        data.load("gravity", 2, size=8, cache_dir=tmp_path)
    assert list(tmp_path.rglob("*")) == []
    monkeypatch.undo()
    first = data.load("gravity", 2, size=8, cache_dir=tmp_path)
    assert [p.suffix for p in tmp_path.iterdir()] == [".pt"]
    again = data.load("gravity", 2, size=8, cache_dir=tmp_path)
    assert torch.equal(first.inputs, again.inputs)
