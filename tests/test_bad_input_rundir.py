"""Bad run names and run folders (issue 16): each is refused with one ``error:`` line, exit 2, before the data
loads, and leaves every file as it was (no run folder, no ``.lock`` left behind). The harness is
``tests/bad_input_harness.py``."""

from __future__ import annotations

import json

import pytest
from bad_input_harness import cases, check_case

from vsekit.training.manifest import write_manifest

CASES, case = cases()


def named(name: str):
    return lambda d: d.update(name=name)


@case
def run_name_climbs_out_of_runs(e):
    return e.run(change=named("../../x")), ["name", "'../../x' is a path", "--out"]


@case
def validate_name_climbs_out_of_runs(e):
    e.write_spec(named("../../x"))
    return ["validate", str(e.spec)], ["name", "'../../x' is a path"]


@case
def run_name_is_absolute(e):
    return e.run(change=named(str(e.root / "abs"))), ["name", "is a path"]


@case
def validate_name_is_absolute(e):
    e.write_spec(named("/tmp/abs"))
    return ["validate", str(e.spec)], ["name", "is a path"]


@case
def run_name_with_a_backslash(e):
    return e.run(change=named("a\\b")), ["name", "is a path"]


@case
def run_name_is_dotdot(e):
    return e.run(change=named("..")), ["name", "'..' is not a name"]


@case
def run_name_holds_nul(e):
    return e.run(change=named("a\0b")), ["name", "NUL"]


@case
def validate_name_holds_nul(e):
    e.write_spec(named("a\0b"))
    return ["validate", str(e.spec)], ["name", "NUL"]


@case
def run_name_holds_a_control_character(e):
    return e.run(change=named("a\x1bb")), ["name", "control character"]


@case
def run_set_name_not_utf8(e):  # what a shell passes for --set name=$'a\xffb'
    return e.run("--set", "name=a\udcffb"), ["name", "not UTF-8"]


@case
def run_set_path_not_utf8(e):
    return e.run("--set", "data.dir=a\udcffb"), ["--set", "data.dir", "not UTF-8"]


@case
def run_set_name_with_an_escaped_nul(e):
    return e.run("--set", 'name="a\\u0000b"'), ["--set", "name", "NUL"]


@case
def run_out_below_a_file(e):
    (e.root / "file.txt").write_text("mine")
    argv = e.run()
    argv[argv.index(str(e.out))] = str(e.root / "file.txt" / "run")
    return argv, [e.root / "file.txt", "is a file"]


def old_run_folder(e):
    """A run folder written before run folders had a manifest."""
    old = e.root / "old"
    old.mkdir()
    for name in ("spec.toml", "provenance.json", "best.json", "results.json"):
        (old / name).write_text("{}")
    return old


@case
def run_force_on_a_folder_from_before_the_manifest(e):
    argv = e.run("--force")
    argv[argv.index(str(e.out))] = str(old_run_folder(e))
    return argv, [e.root / "old", "earlier vsekit", "move the folder away", "--out"]


@case
def run_force_where_a_users_file_takes_a_run_files_name(e):
    old = old_run_folder(e)
    write_manifest(old, ["spec.toml", "provenance.json", "best.json"])  # results.json is not ours
    argv = e.run("--force")
    argv[argv.index(str(e.out))] = str(old)
    return argv, [old / "results.json", "not written by vsekit"]


@case
def run_force_with_a_manifest_listing_outside(e):
    old = old_run_folder(e)
    (old / ".vsekit-run").write_text(json.dumps({"format": "vsekit-run/1", "written": ["../victim.txt"]}))
    (e.root / "victim.txt").write_text("mine")
    argv = e.run("--force")
    argv[argv.index(str(e.out))] = str(old)
    return argv, ["../victim.txt", "not a path inside the run folder"]


@case
def run_lock_file_is_a_link(e):
    folder = e.root / "linked"
    folder.mkdir()
    (e.root / "victim.txt").write_text("mine")
    (folder / ".lock").symlink_to(e.root / "victim.txt")
    argv = e.run()
    argv[argv.index(str(e.out))] = str(folder)
    return argv, [folder / ".lock", "a link"]


def user_project(e, *extra: str):
    """A folder of the user's holding a ``spec.toml`` (with their comment) and files named like a run's."""
    proj = e.root / "proj"
    proj.mkdir()
    (proj / "spec.toml").write_text("# my notes\n" + e.write_spec().read_text(encoding="utf-8"), encoding="utf-8")
    for name in ("results.csv", "vocab.json", "metrics.jsonl", *extra):
        (proj / name).write_text("mine\n", encoding="utf-8")
    return proj


@case
def resume_will_not_take_over_a_users_folder(e):
    proj = user_project(e)
    argv = ["run", str(proj / "spec.toml"), "--out", str(proj), "-q", "--resume"]
    return argv, [str(proj), "not a vsekit run folder"]


@case
def resume_will_not_read_a_users_results_json(e):
    proj = user_project(e, "results.json")
    argv = ["run", str(proj / "spec.toml"), "--out", str(proj), "-q", "--resume"]
    return argv, [str(proj), "not a vsekit run folder"]


@pytest.mark.parametrize("make", CASES)
def test_refused(make, env):
    check_case(make, env)
