"""Resume: a run killed (SIGKILL) or interrupted (Ctrl-C) and resumed ends exactly like an uninterrupted one.

The training runs the real CLI in a child process forked from the test (no second torch import, which takes
long on a busy machine), with every step slowed down so that it can be stopped at a chosen step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import mini_slice, tiny_spec_text
from safetensors.torch import load_file

import vsekit
from vsekit import checkpoint
from vsekit.cli import cli
from vsekit.errors import CheckpointError
from vsekit.spec import dumps_toml
from vsekit.training import loop
from vsekit.training.lock import RunLock

SAVE_FREQ = 5
STEPS = 32  # 2 epochs of 16 batches (1000 captions, batch 64)
TIMING = ("captions_per_s", "seconds", "threads")


def spec_tables(data_dir: Path) -> dict:
    """InfoNCE (a learned temperature), word dropout (torch RNG), mid-epoch validation and saves."""
    return {
        "name": "resume",
        "data": {"type": "precomp", "dir": str(data_dir)},
        "model": {"dim": 32, "sentence_encoder": {"type": "gru", "dim_word": 16, "word_dropout": 0.1}},
        "loss": {"type": "infonce"},
        "train": {"max_epochs": 2, "batch_size": 64, "lr": 0.002, "seed": 0, "threads": 1, "disp_freq": 1,
                  "save_freq": SAVE_FREQ, "valid_freq": 7},
    }


@pytest.fixture(scope="module")
def reference(small_data, tmp_path_factory):
    """The spec and an uninterrupted run of it."""
    root = tmp_path_factory.mktemp("resume_ref")
    spec = root / "spec.toml"
    spec.write_text(dumps_toml(spec_tables(small_data)))
    results = vsekit.train(spec, root / "run", quiet=True)
    assert results["steps"] == STEPS
    return spec, root / "run"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], obj={}, catch_exceptions=False)


def _slow_cli(argv: list[str], delay: float, log_path: str) -> None:
    """The child: stdout and stderr to ``log_path``, each training step ``delay`` s slower, then the CLI."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    step = loop.train_step

    def slow_step(*args, **kwargs):
        time.sleep(delay)
        return step(*args, **kwargs)

    loop.train_step = slow_step
    with (open(1, "w", buffering=1, closefd=False) as out, open(2, "w", buffering=1, closefd=False) as err,
          contextlib.redirect_stdout(out), contextlib.redirect_stderr(err)):
        cli.main(args=argv, obj={}, prog_name="vsekit")  # exits (SystemExit) with the command's status


class SlowRun:
    """``vsekit run SPEC --out OUT -q`` in a forked child process."""

    def __init__(self, spec: Path, out: Path, delay: float = 0.1) -> None:
        self.log = out.parent / "child.log"
        ctx = multiprocessing.get_context("fork")
        self.proc = ctx.Process(target=_slow_cli, args=(["run", str(spec), "--out", str(out), "-q"], delay,
                                                        str(self.log)))
        self.proc.start()
        self.pid = self.proc.pid

    def poll(self) -> int | None:
        return self.proc.exitcode

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc.exitcode is None:
            self.proc.kill()
        self.proc.join()


def events(run: Path) -> list[dict]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            break
    return out


def wait_for_step(run: Path, step: int, proc: SlowRun, timeout: float = 600) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended (status {proc.poll()}) before step {step}: {proc.output()}")
        if (run / "metrics.jsonl").exists():
            steps = [e["step"] for e in events(run) if e["event"] == "train"]
            if steps and steps[-1] >= step:
                return steps[-1]
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no step {step} within {timeout} s")


def model_tensors(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(path).items()
            if k.startswith(("sentence_encoder.", "image_encoder.", "loss."))}


def assert_same_run(run: Path, ref: Path) -> None:
    """Same final weights (to 1e-6), same best model, same results and the same metrics log."""
    for name in ("last.safetensors", "best.safetensors"):
        got, want = model_tensors(run / name), model_tensors(ref / name)
        assert set(got) == set(want), name
        for k in want:
            assert torch.allclose(got[k], want[k], atol=1e-6, rtol=0), (name, k, (got[k] - want[k]).abs().max())
    a, b = json.loads((run / "results.json").read_text()), json.loads((ref / "results.json").read_text())
    for r in (a, b):
        r.pop("train_seconds")
        r.pop("run_dir")
    assert a == b

    def plain(run_dir: Path) -> list[dict]:
        return [{k: v for k, v in e.items() if k not in TIMING} for e in events(run_dir) if e["event"] != "resume"]

    assert plain(run) == plain(ref)
    assert sum(e["event"] == "resume" for e in events(run)) >= 1


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_sigkill_at_a_random_step_then_resume_matches_uninterrupted(reference, tmp_path):
    spec, ref = reference
    target = random.Random().randint(SAVE_FREQ + 1, STEPS - 3)  # after the first save, before the end
    out = tmp_path / "run"
    proc = SlowRun(spec, out)
    try:
        wait_for_step(out, 1, proc)
        # while it runs, the folder is locked: a second run is refused, naming the holder
        for extra in (["--resume"], ["--force"]):
            result = invoke("run", spec, "--out", out, "-q", *extra)
            assert result.exit_code == 2, (target, result.output)
            assert str(out) in result.stderr and f"pid {proc.pid}" in result.stderr, result.stderr
        reached = wait_for_step(out, target, proc)
    finally:
        proc.kill()  # SIGKILL
    assert proc.poll() == -signal.SIGKILL, proc.output()
    state = json.loads((out / "last.json").read_text())
    assert SAVE_FREQ <= state["step"] <= reached, (target, state["step"], reached)
    assert not (out / "results.json").exists()

    result = invoke("run", spec, "--out", out, "--resume", "-q")
    assert result.exit_code == 0, (target, result.output)
    assert_same_run(out, ref)
    resumed = [e for e in events(out) if e["event"] == "resume"]
    assert [e["step"] for e in resumed] == [state["step"]], target


def test_ctrl_c_saves_the_state_exits_130_and_resumes(reference, tmp_path):
    spec, ref = reference
    target = random.Random().randint(3, STEPS - 8)
    out = tmp_path / "run"
    proc = SlowRun(spec, out, delay=0.2)
    try:
        wait_for_step(out, target, proc)
        os.kill(proc.pid, signal.SIGINT)
        proc.proc.join(timeout=300)
    finally:
        proc.kill()
    stderr = proc.output()
    assert proc.poll() == 130, stderr
    assert "Traceback" not in stderr
    state = json.loads((out / "last.json").read_text())
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1, stderr
    assert f"training state saved at step {state['step']} in {out / 'last.json'}" in lines[0]
    assert "--resume" in lines[0]
    # the state is the very last step done: nothing in the log after it
    assert events(out)[-1]["step"] == state["step"] >= target
    assert not (out / "results.json").exists()

    result = invoke("run", spec, "--out", out, "--resume", "-q")
    assert result.exit_code == 0, result.output
    assert_same_run(out, ref)


def test_resuming_a_finished_run_returns_its_results_and_changes_nothing(reference, tmp_path):
    spec, ref = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    before = tree(run)
    results = vsekit.train(spec, run, resume=True, quiet=True)
    assert results["run_dir"] == str(run)  # where the run is now; the file records it relative to itself (".")
    assert {**results, "run_dir": "."} == json.loads((ref / "results.json").read_text())
    assert tree(run) == before


def test_resume_refuses_a_changed_spec_but_allows_threads(reference, tmp_path):
    spec, ref = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    before = tree(run)
    with pytest.raises(CheckpointError) as info:
        vsekit.train(spec, run, resume=True, quiet=True, overrides=["train.max_epochs=4", "loss.temperature=0.1"])
    msg = str(info.value)
    assert msg.startswith(f"{run}: cannot resume") and "train.max_epochs: 2 -> 4" in msg
    assert "loss.temperature: 0.07 -> 0.1" in msg and "--force" in msg
    assert tree(run) == before
    vsekit.train(spec, run, resume=True, quiet=True, overrides=["train.threads=2"])  # threads change nothing computed
    assert tree(run) == before


def test_a_run_started_before_new_spec_keys_existed_still_resumes(reference, tmp_path):
    """spec.toml of an older vsekit lacks keys added since (here train.precision, the GRU's impl):
    they take their defaults, which is what the run computed with, so resume is allowed."""
    spec, ref = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    text = (run / "spec.toml").read_text()
    old = "\n".join(line for line in text.splitlines() if not line.startswith(("precision =", "impl =")))
    assert old != text
    (run / "spec.toml").write_text(old + "\n")
    before = tree(run)
    vsekit.train(spec, run, resume=True, quiet=True)  # finished: returns its results, changes nothing
    assert tree(run) == before
    with pytest.raises(CheckpointError, match=r"train\.max_epochs: 2 -> 4"):  # a real change is still refused
        vsekit.train(spec, run, resume=True, quiet=True, overrides=["train.max_epochs=4"])


def test_resume_of_a_run_stopped_before_its_first_save_starts_over(reference, tmp_path):
    spec, ref = reference
    run = tmp_path / "run"
    run.mkdir()
    for name in ("spec.toml", "provenance.json"):  # what a run writes first (a 0.2 run has no manifest)
        shutil.copy(ref / name, run / name)
    (run / "metrics.jsonl").write_text('{"event": "start", "step": 0}\n{"event": "tr')
    vsekit.train(spec, run, resume=True, quiet=True)
    a, b = json.loads((run / "results.json").read_text()), json.loads((ref / "results.json").read_text())
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    assert [e["event"] for e in events(run)][:1] == ["start"]


def test_a_save_stopped_before_its_last_rename_still_loads(reference, tmp_path, monkeypatch):
    """checkpoint.save: weights to NAME.safetensors.pending, the JSON (commit), then the rename."""
    _, ref = reference
    model, _, _ = checkpoint.load(ref / "best.json")
    old = checkpoint.save(tmp_path, "m", model, model.spec, step=1)
    old_weights = (tmp_path / "m.safetensors").read_bytes()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    replace = os.replace

    def dies(src, dst):
        if str(src).endswith(".pending"):
            raise KeyboardInterrupt  # the process stops here
        replace(src, dst)

    monkeypatch.setattr(os, "replace", dies)  # vsekit.io.commit_parts's rename
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, "m", model, model.spec, step=2)
    monkeypatch.undo()
    assert (tmp_path / "m.safetensors").read_bytes() == old_weights  # the old weights, the new JSON
    loaded, meta, _ = checkpoint.load(old)
    assert meta["step"] == 2
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_seeds_resume_reads_finished_seeds_and_continues_the_rest(tmp_path):
    data = mini_slice(tmp_path / "data", {"train": 20, "dev": 10, "test": 10})
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(data, train={"batch_size": 16, "threads": 1}))
    out = tmp_path / "seeds"
    first = vsekit.train(spec, out, seeds=2, quiet=True)
    (out / "seed1" / "results.json").unlink()  # seed 1 stopped after training, before its evaluation
    (out / "summary.json").unlink()
    kept = tree(out / "seed0")
    again = vsekit.train(spec, out, seeds=2, quiet=True, resume=True)
    assert again["mean"] == first["mean"] and again["std"] == first["std"]
    assert tree(out / "seed0") == kept  # a finished seed is read back, not run again


def test_a_diverging_loss_stops_with_one_clear_message(tmp_path, monkeypatch):
    data = mini_slice(tmp_path / "data", {"train": 20, "dev": 10, "test": 10})
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(data, train={"batch_size": 16, "threads": 1}))
    real = loop.train_step
    calls = []

    def nan_at_third(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(loop, "train_step", nan_at_third)
    result = invoke("run", spec, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {spec}: [train] lr: the training loss became nan at step 3"), result.stderr
    assert not (tmp_path / "run" / "results.json").exists()
    RunLock(tmp_path / "run").acquire().release()  # the folder is not left locked


# --------------------------------------------------------------------------
# resume equals an uninterrupted run with a cosine schedule, gradient clipping and early stopping

CONFIGS = {
    # lr follows the step: a resume that miscounts steps or total steps changes every later lr
    "cosine": {"lr_schedule": "cosine", "max_epochs": 2},
    # clipping at 0.01 is active on every step (the gradient norms here are far larger)
    "grad_clip": {"grad_clip": 0.01, "max_epochs": 2},
    # a high lr peaks early: the run stops after 2 validations without improvement, well before max_epochs
    # (saves every 5 steps: one falls between the first validation without improvement and the stop)
    "early_stopping": {"early_stopping": 2, "lr": 0.02, "max_epochs": 6, "save_freq": 5},
}
STEPS_PER_EPOCH = 16  # 100 train images, 500 captions, batch 32


class Crash(RuntimeError):
    """Stands for a SIGKILL: nothing is saved, the folder keeps the last periodic save."""


@pytest.mark.parametrize("name", list(CONFIGS))
def test_resume_after_a_crash_matches_uninterrupted(name, tmp_path, monkeypatch):
    data = mini_slice(tmp_path / "data", {"train": 100, "dev": 20, "test": 20})
    tables = {
        "name": "resume-" + name,
        "data": {"type": "precomp", "dir": str(data)},
        "model": {"dim": 32, "sentence_encoder": {"type": "gru", "dim_word": 16, "word_dropout": 0.1}},
        "loss": {"type": "infonce"},
        "train": {"batch_size": 32, "lr": 0.002, "seed": 0, "threads": 1, "disp_freq": 1, "save_freq": 4,
                  "valid_freq": 3, **CONFIGS[name]},
    }
    spec = tmp_path / "spec.toml"
    spec.write_text(dumps_toml(tables))
    ref = tmp_path / "ref"
    results = vsekit.train(spec, ref, quiet=True)
    valid = [(e["step"], e["rsum"]) for e in events(ref) if e["event"] == "valid"]
    lrs = [e["lr"] for e in events(ref) if e["event"] == "train"]
    if name == "early_stopping":
        assert results["steps"] < CONFIGS[name]["max_epochs"] * STEPS_PER_EPOCH, results["steps"]
        # crash right after a save made while the run had already seen a validation without improvement
        best_so_far = [max(r for _, r in valid[: i + 1]) for i in range(len(valid))]
        after_worse = [s for i, (s, r) in enumerate(valid) if i and r < best_so_far[i - 1]]
        freq = tables["train"]["save_freq"]
        saves = [s for s in range(freq, results["steps"], freq) if s > after_worse[0]]
        assert saves, (valid, results["steps"])
        crash_after = saves[0] + 1  # resumed from that save, with one validation without improvement counted
    else:
        assert results["steps"] == 2 * STEPS_PER_EPOCH
        crash_after = 11  # the last save is at step 8 or 9 (a better validation saves too): steps after it rerun
        if name == "cosine":
            assert lrs[0] > lrs[len(lrs) // 2] > lrs[-1] > 0
    real, calls = loop.train_step, []

    def crash_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == crash_after + 1:
            raise Crash(f"crash during step {crash_after + 1}")
        return real(*args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(loop, "train_step", crash_once)
    with pytest.raises(Crash):
        vsekit.train(spec, out, quiet=True)
    monkeypatch.setattr(loop, "train_step", real)
    state = json.loads((out / "last.json").read_text())
    assert 0 < state["step"] < crash_after and not (out / "results.json").exists()  # some steps are done again
    assert vsekit.train(spec, out, quiet=True, resume=True)["steps"] == results["steps"]
    assert_same_run(out, ref)
