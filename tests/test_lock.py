"""The run-folder lock: one writer at a time, a clear refusal for the second, released however the holder ends."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import mini_slice, tiny_spec_text

import vsekit
from vsekit.cli import cli
from vsekit.errors import CheckpointError
from vsekit.training import loop
from vsekit.training.lock import LOCK_NAME, RunLock, check_free

# a holder that is not vsekit at all: the lock is the OS's flock on RUN/.lock
HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
time.sleep(600)
"""


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], obj={}, catch_exceptions=False)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lock")
    data = mini_slice(root / "data", {"train": 20, "dev": 10, "test": 10})
    spec = root / "spec.toml"
    spec.write_text(tiny_spec_text(data, train={"batch_size": 16, "threads": 1}))
    return spec


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    with RunLock(tmp_path / "run") as held:
        assert held.held and (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(CheckpointError) as info:
            RunLock(tmp_path / "run").acquire()
        assert str(info.value).startswith(f"{tmp_path / 'run'}: another vsekit run (pid {os.getpid()})")
        with pytest.raises(CheckpointError, match=f"pid {os.getpid()}"):
            check_free(tmp_path / "run")
    assert not held.held
    check_free(tmp_path / "run")
    RunLock(tmp_path / "run").acquire().release()
    check_free(tmp_path / "nowhere")  # creates nothing
    assert not (tmp_path / "nowhere").exists()


def test_second_run_into_a_locked_folder_is_refused(tiny_spec, tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        before = tree(tmp_path)
        for extra in ([], ["--force"], ["--resume"], ["--seeds", "2", "--force"]):
            result = invoke("run", tiny_spec, "--out", out, "-q", *extra)
            assert result.exit_code == 2, (extra, result.output)
            err = result.stderr
            assert err.startswith(f"error: {out}: another vsekit run (pid {os.getpid()})"), (extra, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in result.output
            assert tree(tmp_path) == before


@pytest.mark.skipif(sys.platform == "win32", reason="the holder takes the lock with fcntl")
def test_lock_released_when_the_holder_is_killed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match=f"pid {proc.pid}"):
            RunLock(run).acquire()
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while True:  # the kernel drops the lock with the process
        try:
            RunLock(run).acquire().release()
            break
        except CheckpointError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_lock_released_after_a_run_and_after_a_crash(tiny_spec, tmp_path, monkeypatch):
    out = tmp_path / "run"
    vsekit.train(tiny_spec, out, quiet=True)
    assert (out / LOCK_NAME).read_text() == ""  # released: no holder recorded
    RunLock(out).acquire().release()

    calls = []
    real = loop.train_step

    def crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", crash)
    with pytest.raises(RuntimeError, match="boom"):
        vsekit.train(tiny_spec, out, quiet=True, force=True)
    RunLock(out).acquire().release()


# a platform without fcntl (Windows): filelock takes the lock its own way, and the training package never needs it
NO_FCNTL = """
import sys, warnings
sys.modules["fcntl"] = None  # `import fcntl` now raises ImportError
warnings.simplefilter("ignore")  # filelock says that only its soft lock is left here
import vsekit.training
from vsekit.spec import load
from vsekit.training.lock import RunLock
results = vsekit.training.fit(load(sys.argv[1]), sys.argv[2], quiet=True)
with RunLock(sys.argv[2]):
    try:
        RunLock(sys.argv[2]).acquire()
    except Exception as exc:
        print("refused:", exc)
print("fcntl" in sys.modules and sys.modules["fcntl"] is not None, results["test"]["rsum"] > 0)
"""


def test_training_runs_without_fcntl(tiny_spec, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", NO_FCNTL, str(tiny_spec), str(out)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"refused: {out}: another vsekit run (pid "), proc.stdout
    assert lines[-1] == "False True", proc.stdout
    assert (out / "results.json").is_file()
