"""``vsekit compare``: every run's dev and test numbers as recorded, seeds as mean ± std, differing protocols
flagged, the dev rsum curves overlaid, the page; bad input refused with one ``error:`` line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_input_harness import cases, check_case, edit_json, invoke
from click.testing import CliRunner
from conftest import mini_slice, tiny_spec_text

import vsekit
from vsekit import compare
from vsekit.cli import cli
from vsekit.report import curves


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """``a``: one run; ``seeds``: two seeds of it; ``b``: the same on a test split of 8 images (another protocol)."""
    root = tmp_path_factory.mktemp("compare")
    small_test = mini_slice(root / "data8", {"train": 20, "dev": 10, "test": 8})
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for name, data, seeds in (("a", tiny_data, 1), ("seeds", tiny_data, 2), ("b", small_test, 1)):
            spec = root / f"{name}.toml"
            spec.write_text(tiny_spec_text(data, train={"batch_size": 16, "threads": 1, "max_epochs": 2}))
            vsekit.train(spec, root / name, quiet=True, seeds=seeds)
            out[name] = root / name
    finally:
        torch.set_num_threads(old)
    return out


def test_compare_table_files_and_flags(runs, tmp_path):
    out = tmp_path / "cmp"
    res = CliRunner().invoke(cli, ["compare", str(runs["a"]), str(runs["seeds"]), str(runs["b"]), "-o", str(out)],
                             obj={})
    assert res.exit_code == 0, res.output
    record = json.loads((out / "compare.json").read_text())
    got = {r["label"]: r for r in record["runs"]}
    # values as each run recorded them (read here independently of vsekit.compare)
    a = json.loads((runs["a"] / "results.json").read_text())
    assert got["a"]["test"]["rsum"] == a["test"]["rsum"] and got["a"]["dev"]["rsum"] == a["valid"]["rsum"]
    seeds = [json.loads(p.read_text()) for p in sorted(runs["seeds"].glob("seed*/results.json"))]
    assert len(seeds) == 2 and got["seeds"]["seeds"] == [0, 1]
    for split, key in (("test", "test"), ("dev", "valid")):
        values = [s[key]["rsum"] for s in seeds]
        assert got["seeds"][split]["rsum"] == pytest.approx(np.mean(values))
        assert got["seeds"]["std"][split]["rsum"] == pytest.approx(np.std(values, ddof=1))
    # the protocol: b's test split has 8 images and 40 captions, the others 10 and 50
    assert got["a"]["protocol_differs"] == [] and got["seeds"]["protocol_differs"] == []
    assert got["b"]["protocol_differs"] == ["test n_images", "test n_captions_eval"]
    assert got["b"]["protocol"]["test"]["n_images"] == 8 and got["a"]["protocol"]["test"]["ties"] == "pessimistic"
    assert "b: test ties pessimistic, 1 fold, 5 caps/image, 8 images / 40 captions [PROTOCOL DIFFERS" in res.stdout
    assert "seeds (2 seeds) test" in res.stdout and "±" in res.stdout
    with (out / "compare.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["run"], r["split"]) for r in rows] == [(n, s) for n in ("a", "seeds", "b") for s in ("dev", "test")]
    assert float(rows[1]["rsum"]) == a["test"]["rsum"] and rows[5]["protocol_differs"]
    assert (out / "compare.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "compare.html").read_text()
    assert "<script" not in page and 'src="compare.png"' in page and "protocol differs: test n_images" in page
    # a second compare into the same folder replaces vsekit's own files
    assert CliRunner().invoke(cli, ["compare", str(runs["a"]), "-o", str(out)], obj={}).exit_code == 0


def test_compare_png_overlays_each_runs_dev_rsum(runs, tmp_path, monkeypatch):
    drawn = {}
    real = curves.save_png

    def keep(fig, out):
        drawn.update({line.get_label(): line.get_xydata().tolist() for line in fig.axes[0].lines})
        return real(fig, out)

    monkeypatch.setattr(curves, "save_png", keep)
    compare.plot_compare(compare.compare_runs([runs["a"], runs["seeds"]]), tmp_path / "c.png")
    for label, folder in (("a", runs["a"]), ("seeds seed 0", runs["seeds"] / "seed0"),
                          ("seeds seed 1", runs["seeds"] / "seed1")):
        events = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        assert drawn[label] == [[e["step"], e["rsum"]] for e in events if e["event"] == "valid"]
    assert len(drawn) == 3


def test_without_output_folder_only_the_table(runs, tmp_path):
    res = invoke(["compare", str(runs["a"])], tmp_path)
    assert res.exit_code == 0 and "a test" in res.stdout and list(tmp_path.iterdir()) == []


CASES, case = cases()


@case
def no_such_folder(e):
    return ["compare", str(e.root / "nope")], [e.root / "nope", "no such folder"]


@case
def a_file(e):
    return ["compare", str(e.write_spec())], [e.spec, "not a run folder"]


@case
def an_empty_folder(e):
    (e.root / "empty").mkdir()
    return ["compare", str(e.root / "empty")], [e.root / "empty", "no results.json"]


@case
def a_run_without_results(e):
    run = e.run_copy()
    (run / "results.json").unlink()
    return ["compare", str(run)], [run, "a run without results.json", "--resume"]


@case
def results_not_json(e):
    run = e.run_copy()
    (run / "results.json").write_text("{")
    return ["compare", str(run)], [run / "results.json", "not a readable JSON file"]


@case
def results_without_test(e):
    run = e.run_copy()
    edit_json(run / "results.json", lambda m: m.pop("test"))
    return ["compare", str(run)], [run / "results.json", '"test"']


@case
def seeds_summary_without_runs(e):
    (e.root / "seeds").mkdir()
    (e.root / "seeds" / "summary.json").write_text('{"runs": []}')
    return ["compare", str(e.root / "seeds")], [e.root / "seeds" / "summary.json", '"runs"']


@case
def the_second_run_is_bad(e):
    run = e.run_copy()
    return ["compare", str(run), str(e.root / "gone")], [e.root / "gone", "no such folder"]


@case
def output_folder_holds_someone_elses_file(e):
    run = e.run_copy()
    (e.root / "mine").mkdir()
    (e.root / "mine" / "compare.csv").write_text("my own numbers\n")
    return ["compare", str(run), "-o", str(e.root / "mine")], [e.root / "mine" / "compare.csv", "not written by"]


@pytest.mark.parametrize("make", CASES)
def test_bad_input_is_refused_in_one_line(make, env):
    check_case(make, env)
