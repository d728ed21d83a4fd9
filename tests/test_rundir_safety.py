"""Run folders never lose a user's files (issue 16): ``--force`` removes only what the folder's manifest lists,
after the lock is held and the folder checked again; two runs racing for a folder leave the winner's results.

The ``--force`` and concurrent-run cases run ``python -m vsekit run`` in real processes; refusals of bad names
and folders are in ``tests/test_bad_input_rundir.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bad_input_harness import invoke
from conftest import REPO, tiny_spec_text

import vsekit
from vsekit.errors import CheckpointError
from vsekit.training import orchestration
from vsekit.training.lock import RunLock
from vsekit.training.manifest import MANIFEST_NAME, clear_listed, read_manifest, record_written, write_manifest

TRAIN = {"batch_size": 16, "threads": 1}


def vsekit_proc(*args: object) -> subprocess.Popen:
    """``python -m vsekit ARGS`` in a new process, importing this checkout, one thread."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vsekit", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def one_error_line(err: str) -> str:
    """The single ``error:`` line of a refused run (no traceback, nothing else printed as an error)."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (links as their target text), folders as "dir"."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.fixture
def spec(tmp_path, tiny_data) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(tiny_spec_text(tiny_data, train=TRAIN), encoding="utf-8")
    return path


def test_force_on_the_data_folder_changes_nothing(tmp_path, tiny_data):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    spec = data / "spec.toml"  # the spec inside the data folder, as in the issue
    spec.write_text(tiny_spec_text(data, train=TRAIN), encoding="utf-8")
    before = hashes(data)
    assert len(before) == 7
    code, _, err = finish(vsekit_proc("run", spec, "--out", data, "--force", "-q"))
    assert code == 2, err
    line = one_error_line(err)
    assert str(data) in line and "not a vsekit run folder" in line and MANIFEST_NAME in line, line
    assert hashes(data) == before  # every data file and the spec unchanged; no .lock, no manifest added


def test_two_runs_racing_for_one_folder_leave_the_winners_results(tmp_path, spec):
    out = tmp_path / "run"
    procs = [vsekit_proc("run", spec, "--out", out, "-q") for _ in range(2)]
    done = [finish(p) for p in procs]
    assert sorted(code for code, _, _ in done) == [0, 2], [d[2][-2000:] for d in done]
    _, won_out, _ = next(d for d in done if d[0] == 0)
    line = one_error_line(next(d for d in done if d[0] == 2)[2])
    assert str(out) in line and ("another vsekit run" in line or "not empty" in line), line
    results = json.loads((out / "results.json").read_text())
    assert f"{results['test']['rsum']:.1f}" in won_out  # the winner's own results, not overwritten or removed
    listed = read_manifest(out)
    assert {"results.json", "best.json", "best.safetensors", "spec.toml"} <= set(listed)
    vsekit.load_model(out)  # its checkpoint is whole


def test_a_run_that_finished_between_check_and_lock_is_not_cleared(tmp_path, spec, monkeypatch):
    """Check, lock, check again: the second run (no --force) refuses instead of emptying the first's folder."""
    out = tmp_path / "run"
    real_load = orchestration.load_data

    def other_run_finishes_meanwhile(s):
        monkeypatch.setattr(orchestration, "load_data", real_load)
        vsekit.train(spec, out, quiet=True)  # another run takes the folder while this one loads its data
        return real_load(s)

    monkeypatch.setattr(orchestration, "load_data", other_run_finishes_meanwhile)
    with pytest.raises(CheckpointError, match="not empty"):
        vsekit.train(spec, out, quiet=True)
    assert (out / json.loads((out / "results.json").read_text())["run_dir"]).resolve() == out.resolve()
    assert "results.json" in read_manifest(out)


def test_force_replaces_our_files_only_and_follows_no_link(tmp_path, spec):
    out = tmp_path / "run"
    vsekit.train(spec, out, quiet=True)
    old = hashes(out)
    (out / "notes.txt").write_text("mine")  # a user's file in the run folder
    secret = tmp_path / "secret.txt"
    secret.write_text("do not touch")
    (out / "best.json").unlink()
    (out / "best.json").symlink_to(secret)  # planted where vsekit wrote (and listed) best.json
    (out / "mine").mkdir()
    (out / "mine" / "keep.txt").write_text("mine too")
    code, _, err = finish(vsekit_proc("run", spec, "--out", out, "--force", "-q"))
    assert code == 0, err[-3000:]
    assert (out / "notes.txt").read_text() == "mine" and (out / "mine" / "keep.txt").read_text() == "mine too"
    assert secret.read_text() == "do not touch"
    assert not (out / "best.json").is_symlink() and json.loads((out / "best.json").read_text())["format"]
    assert hashes(out)["provenance.json"] != old["provenance.json"]  # ours rewritten (a new timestamp)
    listed = read_manifest(out)
    assert "notes.txt" not in listed and "mine/" not in listed and "best.json" in listed


def test_other_writers_list_their_files_and_force_clears_them(tmp_path, spec):
    out = tmp_path / "run"
    vsekit.train(spec, out, quiet=True)
    for argv in (["eval", str(out), "-q"], ["bank", str(out)], ["report", str(out), "-n", "2"]):
        result = invoke(argv, tmp_path)
        assert result.exit_code == 0, (argv, result.output)
    ours = ["eval_test.json", "best.captions_bank.json", "best.captions_bank.safetensors", "report/gallery.html"]
    assert {*ours, "report/"} <= set(read_manifest(out))
    (out / "report" / "mine.txt").write_text("mine")
    vsekit.train(spec, out, quiet=True, force=True)
    assert not any((out / name).exists() for name in ours)
    assert (out / "report" / "mine.txt").read_text() == "mine"


def test_force_over_seed_runs_keeps_a_users_file_in_a_seed_folder(tmp_path, spec):
    out = tmp_path / "seeds"
    vsekit.train(spec, out, seeds=2, quiet=True)
    assert {"seed0/", "seed1/", "summary.json"} <= set(read_manifest(out))
    (out / "seed0" / "notes.txt").write_text("mine")
    vsekit.train(spec, out, seeds=2, quiet=True, force=True)
    assert (out / "seed0" / "notes.txt").read_text() == "mine"
    assert (out / "seed1" / "results.json").is_file() and (out / "summary.json").is_file()


def test_clear_listed_removes_listed_names_only(tmp_path):
    run = tmp_path / "run"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_text("theirs")
    run.mkdir()
    write_manifest(run, [])
    (run / "tb").mkdir()
    record_written(run / "ours.txt", run / "tb" / "x", folders=[run / "tb", run / "linked"])
    (run / "ours.txt").write_text("ours")
    (run / "tb" / "x").write_text("ours")
    (run / "tb" / "y").write_text("user's, in our folder")
    (run / "linked").symlink_to(outside, target_is_directory=True)
    write_manifest(run, [*read_manifest(run), "linked/a.txt"])  # through a link: never followed
    kept = clear_listed(run)
    assert not (run / "ours.txt").exists() and not (run / "tb" / "x").exists()
    assert (run / "tb" / "y").exists() and kept == ["tb/"]  # a listed folder stays while it holds a user's file
    assert (outside / "a.txt").read_text() == "theirs" and (run / "linked").is_symlink()
    write_manifest(run, ["../outside/a.txt"])
    with pytest.raises(CheckpointError, match="not a path inside the run folder"):
        clear_listed(run)
    assert (outside / "a.txt").exists()


def test_a_lock_taken_then_refused_leaves_nothing_it_made(tmp_path):
    fresh = tmp_path / "fresh"
    with RunLock(fresh) as lock:
        lock.discard_on_release()
    assert not fresh.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("mine")
    with RunLock(kept) as lock:
        lock.discard_on_release()
    assert sorted(p.name for p in kept.iterdir()) == ["mine.txt"]  # the folder was there: only the lock goes
