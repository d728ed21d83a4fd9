"""Every fenced code block of README.md runs (or is marked why not), so the README cannot go stale.

Rules, per block (its language is the word after the opening fence):

* ``python``: executed in a subprocess from the repo root;
* ``bash`` / ``sh`` / ``shell`` / ``console``: run with ``bash -e -o pipefail`` from the repo root (a console
  block runs its ``$ `` lines), with the test's Python environment first on ``PATH``;
* ``toml`` / ``json``: parsed (a block that does not parse fails);
* a block is skipped only when the line directly before it is ``<!-- readme-test: skip (REASON) -->`` with a
  non-empty REASON; any other block (no language, ``text``, ...) fails the test.

Blocks naming ``../shared`` need the real Flickr8K data beside the checkout, blocks naming ``f8k`` the installed
model ``f8k`` (``vsekit-f8k``): missing, the block is skipped, and failed under ``CI=true``
(:func:`vsekit.testing.missing_test_input`). Subprocesses get ``VSEKIT_CACHE_DIR`` in a temporary folder and
one thread.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from vsekit import testing

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = re.compile(r"^<!-- readme-test: skip \((?P<reason>.*)\) -->$")
RUNNERS = {"python", "bash", "sh", "shell", "console", "toml", "json"}
TIMEOUT_S = 600


def blocks(text: str) -> list[dict]:
    """The fenced blocks of a Markdown text: ``line`` (1-based, of the opening fence), ``lang``, ``code`` and
    ``skip`` (the marker's reason, None when unmarked, "" for a marker without a reason)."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        marker = SKIP.match(lines[start - 1].strip()) if start > 0 else None
        out.append({"line": start + 1, "lang": lang, "code": "\n".join(lines[start + 1 : j]),
                    "skip": marker.group("reason").strip() if marker else None})
        i = j + 1
    return out


def problem(block: dict) -> str | None:
    """Why a block can neither run nor be skipped, or None."""
    if block["skip"] == "":
        return f"README.md:{block['line']}: the skip marker gives no reason: <!-- readme-test: skip (REASON) -->"
    if block["skip"] is None and block["lang"] not in RUNNERS:
        return (f"README.md:{block['line']}: a ```{block['lang']} block cannot run here: use one of "
                f"{', '.join(sorted(RUNNERS))}, or mark it with <!-- readme-test: skip (REASON) --> on the line "
                f"before")
    return None


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(VSEKIT_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _needs(code: str) -> None:
    if "../shared" in code and not (REPO.parent / "shared" / "data" / "flickr8k").is_dir():
        testing.missing_test_input("the README block reads ../shared/data/flickr8k beside the checkout")
    if re.search(r"\bf8k\b", code):
        from vsekit.retrieval.models import installed_models

        if "f8k" not in installed_models():
            testing.missing_test_input("the README block uses the installed model f8k (pip install -e "
                                       "plugins/vsekit-f8k -e plugins/vsekit-efficientnet)")


def run_block(block: dict, tmp_path: Path) -> None:
    """Run (or parse) one block; fails with its output when it does not work."""
    lang, code = block["lang"], block["code"]
    where = f"README.md:{block['line']}"
    if lang == "toml":
        tomllib.loads(code)
        return
    if lang == "json":
        json.loads(code)
        return
    _needs(code)
    if lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
        if lang == "console":
            code = "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))
        cmd = ["bash", "-e", "-o", "pipefail", "-c", code]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{where} ({lang}) exited {proc.returncode}:\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"


README_BLOCKS = blocks(README.read_text(encoding="utf-8"))


def _param(block: dict) -> object:
    """A block as a test case; a block marked ``readme-test: skip (REASON)`` is skipped with its reason."""
    marks = [pytest.mark.skip(reason=f"README.md:{block['line']}: {block['skip']}")] if block["skip"] else []
    return pytest.param(block, marks=marks, id=f"line{block['line']}-{block['lang'] or 'plain'}")


def test_every_block_runs_or_says_why_not():
    """Every block has a language and every skip marker a reason (the skipped blocks are checked here)."""
    problems = [problem(b) for b in README_BLOCKS]
    assert not [p for p in problems if p], problems


@pytest.mark.parametrize("block", [_param(b) for b in README_BLOCKS])
def test_readme_block(block, tmp_path):
    assert problem(block) is None, problem(block)
    run_block(block, tmp_path)


def test_the_readme_has_the_pretrained_model_and_the_api():
    text = README.read_text(encoding="utf-8")
    for needed in ("vsekit-f8k", "vsekit models", "vsekit retrieve", "vsekit.retrieve(", "load_model(\"f8k\")",
                   "encode_images(", "similarity("):
        assert needed in text, needed
    python = [b for b in README_BLOCKS if b["lang"] == "python"]
    first = python[0]["code"].splitlines()
    assert len(first) == 5 and 'load_model("f8k")' in first[1] and "similarity" in first[4]


def test_the_rules_catch_an_unmarked_or_unreasoned_block(tmp_path):
    text = ("intro\n```\nplain\n```\n<!-- readme-test: skip () -->\n```bash\nfalse\n```\n"
            "<!-- readme-test: skip (slow) -->\n```text\nout\n```\n```toml\na = [\n```\n```bash\nexit 3\n```\n")
    found = blocks(text)
    assert [(b["line"], b["lang"], b["skip"]) for b in found] == [
        (2, "", None), (6, "bash", ""), (10, "text", "slow"), (13, "toml", None), (16, "bash", None)]
    assert "cannot run here" in problem(found[0])
    assert "gives no reason" in problem(found[1])
    assert problem(found[2]) is None and problem(found[3]) is None
    with pytest.raises(tomllib.TOMLDecodeError):
        run_block(found[3], tmp_path)
    with pytest.raises(AssertionError, match="exited 3"):
        run_block(found[4], tmp_path)
