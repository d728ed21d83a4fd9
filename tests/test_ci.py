"""What CI relies on: pytest options, and tests that need real data failing (not skipping) under CI=true."""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest
from conftest import REPO

from vsekit import testing


def test_pytest_options_report_skips_check_markers_and_list_slow_tests():
    opts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    args = shlex.split(opts["addopts"])
    assert {"-ra", "--strict-markers", "--durations=15"} <= set(args), args
    assert "python -m pytest" in (REPO / ".ci" / "run").read_text(encoding="utf-8")  # CI uses these options


@pytest.mark.parametrize("ci", ["true", "TRUE", "", "false"])
def test_a_missing_input_skips_locally_and_fails_under_ci(monkeypatch, tmp_path, ci):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("VSEKIT_SHARED_DATA", str(tmp_path))
    expected = pytest.fail.Exception if ci.lower() == "true" else pytest.skip.Exception
    with pytest.raises(expected, match="no/such/file"):
        testing.shared_data("flickr8k/captions.txt", "no/such/file")
    with pytest.raises(expected, match="chromium"):
        testing.missing_test_input("chromium not found")


def test_shared_data_finds_the_env_folder(monkeypatch, tmp_path):
    (tmp_path / "flickr8k").mkdir()
    (tmp_path / "flickr8k" / "captions.txt").write_text("x\n")
    monkeypatch.setenv("VSEKIT_SHARED_DATA", str(tmp_path))
    assert testing.shared_data("flickr8k/captions.txt") == tmp_path


def test_no_test_skips_on_absent_data_by_itself():
    """One helper decides skip-or-fail: no test file looks for ../shared or skips on missing data on its own."""
    files = sorted((REPO / "tests").glob("*.py")) + sorted((REPO / "plugins").glob("*/tests/*.py"))
    offenders = []
    for f in files:
        if f.name == "test_ci.py":
            continue
        text = f.read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            if "VSEKIT_SHARED_DATA" in line or re.search(r"pytest\.skip\(|skipif\(.*(data|found|shared)", line, re.I):
                offenders.append(f"{f.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
