"""The bad-input harness shared by ``tests/test_bad_input*.py``: a scratch folder with small data, a spec,
checkpoints and a run (:class:`Env`), the in-process CLI (:func:`invoke`), and the checks every refusal must
pass (:func:`assert_refused`: exit 2, one ``error:`` line, no traceback; :func:`snapshot`: nothing changed on
disk). The fixtures ``tiny_data`` and ``env`` live in ``conftest.py``.

A case is a function ``make(env) -> (argv, needles)``: it spoils a fresh copy of small data, a spec or a
checkpoint under ``env.root``, and returns the command line and the strings the message must contain. Collect
cases with :func:`cases` and run them with :func:`check_case`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_spec_text

from vsekit import checkpoint
from vsekit.cli import cli
from vsekit.data.vocab import Vocab
from vsekit.io import sha256_file
from vsekit.spec import dumps_toml
from vsekit.spec import load as load_spec


class Env:
    """A scratch folder: ``data`` (20/10/10 images of f8k_mini), a spec writer, checkpoints, ``out``."""

    def __init__(self, root: Path, data_template: Path, trained: Path, small_data: Path) -> None:
        self.root = root
        self.data = root / "data"
        shutil.copytree(data_template, self.data)
        self.spec = root / "spec.toml"
        self.out = root / "out"
        self._trained = trained
        self.small_data = small_data

    def tables(self) -> dict:
        return {
            "name": "bad",
            "data": {"type": "precomp", "dir": str(self.data)},
            "model": {"dim": 32, "sentence_encoder": {"type": "gru", "dim_word": 16}},
            "loss": {"type": "contrastive", "margin": 0.2},
            "train": {"max_epochs": 1, "batch_size": 16, "lr": 0.002, "seed": 0, "threads": 1},
        }

    def write_spec(self, change: Callable[[dict], None] | None = None, text: str | None = None) -> Path:
        if text is None:
            d = self.tables()
            if change is not None:
                change(d)
            text = dumps_toml(d)
        self.spec.write_text(text, encoding="utf-8")
        return self.spec

    def run(self, *extra: str, change: Callable[[dict], None] | None = None) -> list[str]:
        """``vsekit run SPEC --out OUT -q``, with the spec changed by ``change``."""
        return ["run", str(self.write_spec(change)), "--out", str(self.out), "-q", *extra]

    def npy(self, split: str) -> Path:
        return self.data / f"{split}_ims.npy"

    def caps(self, split: str) -> Path:
        return self.data / f"{split}_caps.txt"

    def ckpt(self) -> Path:
        """A copy of a trained run's best checkpoint: returns its JSON."""
        folder = self.root / "ckpt"
        folder.mkdir(exist_ok=True)
        for name in ("best.json", "best.safetensors"):
            shutil.copy(self._trained / name, folder / name)
        return folder / "best.json"

    def run_copy(self) -> Path:
        """A copy of the trained run folder (its spec is ``tiny_spec_text(small_data)``)."""
        dest = self.root / "run"
        shutil.copytree(self._trained, dest, ignore=shutil.ignore_patterns(".lock"))
        return dest

    def other_ckpt(self, dim: int = 16, reverse_vocab: bool = False) -> Path:
        """A fresh (untrained) checkpoint with another dim, or the same dims and another vocabulary."""
        meta = json.loads((self._trained / "best.json").read_text())
        words = list(meta["vocab"])
        if reverse_vocab:
            words = words[:2] + words[2:][::-1]
        spec_path = self.root / "other.toml"
        spec_path.write_text(tiny_spec_text(self.small_data, model={"dim": dim}))
        s = load_spec(spec_path)
        spec_path.unlink()
        from vsekit.model import JointModel

        torch.manual_seed(3)
        model = JointModel.build(s.model.sentence_encoder, s.model.image_encoder, Vocab(words), dim,
                                 int(meta["dim_image"]))
        return checkpoint.save(self.root / "other", "best", model, s.to_dict())


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def fix_sha(meta_path: Path) -> None:
    """Make the JSON's checksum match its (tampered) weights, so deeper checks are reached."""
    edit_json(meta_path, lambda m: m.update(weights_sha256=sha256_file(meta_path.with_suffix(".safetensors"))))


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def invoke(argv: list[str], cwd: Path):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, argv, obj={}, catch_exceptions=False)
    finally:
        os.chdir(old)


def assert_refused(result, needles) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    err = result.stderr
    assert err.startswith("error: ") and err.count("error: ") == 1, err  # click's own checks too (--seeds 0)
    assert len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert str(n) in err, (n, err)
    assert result.stdout == "", result.stdout
    return err



def cases() -> tuple[list, Callable]:
    """A new case list and its decorator: ``CASES, case = cases()``; ``@case`` adds a function to ``CASES``."""
    found: list = []

    def case(fn: Callable) -> Callable:
        found.append(pytest.param(fn, id=fn.__name__))
        return fn

    return found, case


def check_case(make: Callable, env: Env) -> str:
    """Run one case: the CLI must refuse it (see :func:`assert_refused`) and change nothing under ``env.root``."""
    argv, needles = make(env)
    before = snapshot(env.root)
    result = invoke(argv, env.root)
    err = assert_refused(result, needles)
    assert snapshot(env.root) == before  # nothing created, changed or removed (no runs/, no out/)
    assert not env.out.exists()
    return err
