"""Resume across thread counts and devices (issue 16, kind 9): the state records both; resuming with another
warns once (a warning log record, and ``results.json``'s ``warnings``); the same ones stay silent."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from bad_input_harness import edit_json, invoke

from vsekit.training.state import runtime, runtime_warning


def _stopped_run(env):
    """A finished tiny run that keeps its last state, with results.json removed: ``--resume`` then restores the
    state and writes the results again (no further training needed)."""
    argv = env.run(change=lambda d: d.update(output={"save_last": True}))
    result = invoke(argv, env.root)
    assert result.exit_code == 0, result.output
    (env.out / "results.json").unlink()
    return argv


def _resume(env, argv, caplog):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vsekit"):
        result = invoke([*argv, "--resume"], env.root)
    assert result.exit_code == 0, result.output
    said = [r.getMessage() for r in caplog.records if "torch thread" in r.getMessage()]
    return said, json.loads((env.out / "results.json").read_text())["warnings"]


def test_the_state_records_threads_and_device(env):
    _stopped_run(env)
    state = json.loads((env.out / "last.json").read_text())["resume"]
    assert state["runtime"] == {"threads": 1, "device": "cpu"}  # env's spec: [train] threads = 1, on CPU


@pytest.mark.parametrize("saved, warns", [
    ({"threads": 1, "device": "cpu"}, False),  # as this run: bit-identical, nothing to say
    ({"threads": 3, "device": "cpu"}, True),
    ({"threads": 1, "device": "cuda:0"}, True),
    (None, False),  # a state saved before the record: nothing known, nothing said
], ids=["same", "threads", "device", "older-state"])
def test_resume_warns_once_when_threads_or_device_differ(env, caplog, saved, warns):
    argv = _stopped_run(env)
    last = env.out / "last.json"
    edit_json(last, lambda m: m["resume"].update(runtime=saved) if saved else m["resume"].pop("runtime"))
    said, in_results = _resume(env, argv, caplog)
    if not warns:
        assert said == [] and not any("torch thread" in w for w in in_results)
        return
    assert len(said) == 1 and "\n" not in said[0]
    assert f"saved with {saved['threads']} on {saved['device']}" in said[0]
    assert "resumed with 1 torch thread(s) on cpu" in said[0] and "bit-identical" in said[0]
    assert [w for w in in_results if "torch thread" in w] == said


def test_runtime_warning_compares_both_fields(tmp_path):
    cpu = torch.device("cpu")
    now = runtime(cpu)
    assert runtime_warning(tmp_path, now, cpu) is None
    assert runtime_warning(tmp_path, None, cpu) is None
    other = runtime_warning(tmp_path, {**now, "threads": now["threads"] + 1}, cpu)
    assert other is not None and str(tmp_path) in other
