"""Run folders, checkpoints, eval results and the shipped f8k model record no absolute path of the machine that
made them (paths are relative to the file's folder: ``vsekit.config.portable``), and still read their data."""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path

import numpy as np
from bad_input_harness import assert_refused, invoke, snapshot
from conftest import REPO

import vsekit
from vsekit.config import portable

F8K_DATA = REPO / "plugins" / "vsekit-f8k" / "src" / "vsekit_f8k" / "data"
TEXT_SUFFIXES = {".toml", ".json", ".jsonl", ".csv", ".txt"}


def strings(record) -> list[str]:
    """Every string of a JSON-like record, dict keys included."""
    if isinstance(record, dict):
        return [s for k, v in record.items() for s in [*strings(k), *strings(v)]]
    if isinstance(record, list):
        return [s for v in record for s in strings(v)]
    return [record] if isinstance(record, str) else []


def records(path: Path) -> list:
    """The parsed records of a text file of a run folder (one per JSON line for ``.jsonl``; [] for others)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return [json.loads(text)]
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if path.suffix == ".toml":
        return [tomllib.loads(text)]
    return []


def machine_paths(folder: Path, forbidden: list[str]) -> list[str]:
    """``FILE: what`` for each forbidden path text in a text file under ``folder``, and each absolute path
    string in its JSON / TOML records."""
    found = []
    for f in sorted(p for p in folder.rglob("*") if p.suffix in TEXT_SUFFIXES):
        text = f.read_text(encoding="utf-8")
        found += [f"{f.name}: {bad}" for bad in forbidden if bad in text]
        found += [f"{f.name}: absolute {s!r}" for r in records(f) for s in strings(r) if os.path.isabs(s)]
    return found


def test_portable_makes_absolute_paths_relative_to_the_folder():
    record = {"dir": "/x/data/f8k", "imports": ["/x/y/enc.py", "rel/enc.py"], "/x/y/run/a.txt": "ab12",
              "type": "gru", "embedded": "vsekit:f8k_mini", "n": 3, "none": None}
    assert portable(record, "/x/y/run") == {
        "dir": "../../data/f8k", "imports": ["../enc.py", "rel/enc.py"], "a.txt": "ab12",
        "type": "gru", "embedded": "vsekit:f8k_mini", "n": 3, "none": None}


def test_a_fresh_run_folder_records_no_path_of_this_machine(trained_run, tmp_path):
    forbidden = [str(trained_run.parent.parent), str(Path.home()), str(REPO)]
    assert machine_paths(trained_run, forbidden) == []
    out = tmp_path / "eval.json"
    result = invoke(["eval", str(trained_run), "-q", "-o", str(out)], tmp_path)
    assert result.exit_code == 0, result.output
    assert machine_paths(tmp_path, [*forbidden, str(tmp_path)]) == []


def _moved_copy(trained_run: Path, dest: Path) -> tuple[Path, Path]:
    """Copy the run folder and its data into ``dest`` with the same relative layout; keep 5 test images of the
    copied data (so that reading the old data instead shows)."""
    base = trained_run.parent.parent
    meta = json.loads((trained_run / "best.json").read_text(encoding="utf-8"))
    data = (trained_run / meta["spec"]["data"]["dir"]).resolve()
    new_run, new_data = dest / trained_run.relative_to(base), dest / data.relative_to(base)
    shutil.copytree(trained_run, new_run)
    shutil.copytree(data, new_data)
    caps = (new_data / "test_caps.txt").read_text(encoding="utf-8").splitlines()[:25]
    (new_data / "test_caps.txt").write_text("".join(c + "\n" for c in caps), encoding="utf-8")
    np.save(new_data / "test_ims.npy", np.load(new_data / "test_ims.npy")[:5])
    return new_run, new_data


def test_a_moved_run_folder_reads_the_data_beside_it(trained_run, tmp_path):
    new_run, _ = _moved_copy(trained_run, tmp_path / "elsewhere")
    metrics, meta_path = vsekit.eval_checkpoint(new_run, verbose=False, log_warnings=False)
    assert meta_path == new_run / "best.json"
    assert metrics["protocol"]["n_images"] == 5  # the original test split has 50
    model = vsekit.load_model(new_run)
    assert vsekit.evalrank(model, verbose=False, print_table=False)["protocol"]["n_images"] == 5


def test_an_old_run_folder_with_absolute_paths_still_loads(trained_run, tmp_path):
    new_run, new_data = _moved_copy(trained_run, tmp_path / "old")
    meta = json.loads((new_run / "best.json").read_text(encoding="utf-8"))
    meta["spec"]["data"]["dir"] = str(new_data)  # what 0.2 wrote
    (new_run / "best.json").write_text(json.dumps(meta), encoding="utf-8")
    metrics, _ = vsekit.eval_checkpoint(new_run / "best.json", verbose=False, log_warnings=False)
    assert metrics["protocol"]["n_images"] == 5


def test_eval_of_a_model_whose_data_is_not_here_says_what_data_it_needs(trained_run, tmp_path):
    alone = tmp_path / "a" / "b" / "alone"  # deeper than the run folder: its relative data path leads nowhere
    alone.mkdir(parents=True)
    for name in ("best.json", "best.safetensors"):
        shutil.copy2(trained_run / name, alone / name)
    before = snapshot(tmp_path)
    err = assert_refused(invoke(["eval", str(alone), "-q"], tmp_path),
                         ["best.json", "--data DIR_OR_SPEC", "train/dev/test_caps.txt", "train/dev/test_ims.npy",
                          "no such folder"])
    assert "spec file" in err
    assert snapshot(tmp_path) == before
    meta = json.loads((trained_run / "best.json").read_text(encoding="utf-8"))
    data = (trained_run / meta["spec"]["data"]["dir"]).resolve()
    result = invoke(["eval", str(alone), "-q", "--data", str(data), "-o", str(tmp_path / "e.json")], tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))["protocol"]["n_images"] == 50


def test_the_shipped_f8k_model_records_no_path_of_the_machine_that_built_it():
    files = sorted(F8K_DATA.glob("*.json"))
    assert {f.name for f in files} >= {"model.json", "model.images_bank.json"}
    forbidden = [str(Path.home()), str(REPO), "/tmp/", "/home/", "/root/", "/work/"]
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert [bad for bad in forbidden if bad in text] == [], f
        assert [s for s in strings(json.loads(text)) if os.path.isabs(s)] == [], f
    meta = json.loads((F8K_DATA / "model.json").read_text(encoding="utf-8"))
    assert Path(meta["spec"]["data"]["dir"]).name == "flickr8k-effnet-lite0"
