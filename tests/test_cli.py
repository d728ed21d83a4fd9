"""The ``vsekit`` command: exit codes, one-line errors, nothing written on refusal, eval output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES, REPO, tiny_spec_text

from vsekit.cli import cli


def invoke(*args, cwd: Path | None = None):
    runner = CliRunner()
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(cli, [str(a) for a in args], obj={}, catch_exceptions=False)
    finally:
        os.chdir(old)


def assert_user_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr
    assert "Traceback" not in result.output
    assert err.count("error: ") == 1 and err.startswith("error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


def test_validate_quickstart():
    result = invoke("validate", EXAMPLES / "quickstart.toml")
    assert result.exit_code == 0, result.output
    assert "quickstart.toml: ok" in result.stdout
    assert "sentence encoder gru" in result.stdout and "loss infonce" in result.stdout


def test_validate_flickr8k_example():
    example = EXAMPLES / "flickr8k.toml"
    assert example.is_file()
    if not (REPO.parent / "shared" / "data" / "flickr8k" / "captions.txt").is_file():
        from vsekit import testing

        testing.missing_test_input("the example names ../shared/data relative to the repo, which is absent here")
    result = invoke("validate", example)
    assert result.exit_code == 0, result.output
    assert "flickr8k.toml: ok" in result.stdout


def test_validate_with_override():
    result = invoke("validate", EXAMPLES / "quickstart.toml", "--set", "loss.type=contrastive",
                    "--set", "model.dim=64")
    assert result.exit_code == 0, result.output
    assert "loss contrastive" in result.stdout and "dim 64" in result.stdout


def test_validate_bad_spec(tmp_path, small_data):
    path = tmp_path / "bad.toml"
    path.write_text(tiny_spec_text(small_data, loss={"margin": "big"}))
    err = assert_user_error(invoke("validate", path), f"{path}: [loss] margin:", "'big'")
    assert len(err.strip().splitlines()) == 1


def test_validate_reports_missing_data_files(tmp_path, small_data):
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    (data / "dev_ims.npy").unlink()
    path = tmp_path / "spec.toml"
    path.write_text(tiny_spec_text(data))
    assert_user_error(invoke("validate", path), f"{data / 'dev_ims.npy'}: no such file")


def test_validate_unknown_split_names(tmp_path, small_data):
    path = tmp_path / "spec.toml"
    path.write_text(tiny_spec_text(small_data, eval={"split": "val"}))
    err = assert_user_error(invoke("validate", path), f"{path}: [eval] split: unknown split 'val'", "dev")
    assert len(err.strip().splitlines()) == 1


def test_run_bad_spec_exits_2_and_writes_nothing(tmp_path, small_data):
    path = tmp_path / "bad.toml"
    path.write_text(tiny_spec_text(small_data, train={"max_epochs": "two"}))
    before = sorted(p.name for p in tmp_path.iterdir())
    err = assert_user_error(invoke("run", path, cwd=tmp_path), f"{path}: [train] max_epochs:")
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/ folder


def test_run_missing_data_file_exits_2_and_writes_nothing(tmp_path, small_data):
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    (data / "test_ims.npy").unlink()
    path = tmp_path / "spec.toml"
    path.write_text(tiny_spec_text(data))
    out = tmp_path / "out"
    assert_user_error(invoke("run", path, "--out", out, "-q", cwd=tmp_path), f"{data / 'test_ims.npy'}: no such file")
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_run_refuses_existing_folder_without_force(tmp_path, small_data):
    path = tmp_path / "spec.toml"
    path.write_text(tiny_spec_text(small_data))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_user_error(invoke("run", path, "--out", out, "-q"), "--force")
    assert (out / "keep.txt").read_text() == "mine"
    # --force does not delete a folder that is not a run folder either
    assert_user_error(invoke("run", path, "--out", out, "-q", "--force"), "not a vsekit run folder")
    assert (out / "keep.txt").read_text() == "mine"


def test_bad_set_syntax(tmp_path):
    assert_user_error(invoke("validate", EXAMPLES / "quickstart.toml", "--set", "train.lr"), "expected KEY=VALUE")


def test_debug_shows_traceback(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["--debug", "validate", str(tmp_path / "nope.toml")], obj={})
    from vsekit.errors import SpecError

    assert isinstance(result.exception, SpecError)


def test_eval_prints_table_and_writes_json(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = invoke("eval", run, "--split", "test", "-q")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Image to text:" in out and "Text to image:" in out
    assert "aR@1" in out and "sMedr" in out and "rsum" in out
    target = run / "eval_test.json"
    assert f"metrics: {target}" in out
    data = json.loads(target.read_text())
    assert data["split"] == "test" and data["checkpoint"] == "best.json"  # relative to the JSON
    # the run was evaluated on the same test split with the same best checkpoint
    expected = json.loads((run / "results.json").read_text())["test"]
    for k in ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "rsum"):
        assert data[k] == pytest.approx(expected[k]), k
    assert f"{expected['rsum']:6.1f}" in out


def test_eval_output_option_and_other_split(trained_run, tmp_path):
    target = tmp_path / "m.json"
    result = invoke("eval", trained_run / "best.json", "--split", "dev", "-o", target, "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(target.read_text())
    assert data["split"] == "dev"
    valid = json.loads((trained_run / "results.json").read_text())["valid"]
    assert data["rsum"] == pytest.approx(valid["rsum"])
    assert not (trained_run / "eval_dev.json").exists()


def test_eval_missing_checkpoint(tmp_path):
    assert_user_error(invoke("eval", tmp_path / "nothing"), "no vsekit checkpoint here")


def test_eval_unknown_split(trained_run, tmp_path):
    assert_user_error(invoke("eval", trained_run, "--split", "val", "-o", tmp_path / "x.json"), "unknown split 'val'")
    assert not (tmp_path / "x.json").exists()


def test_plugins_lists_builtins():
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert "gru" in rows["vsekit"]["components"]["sentence_encoder"]
    assert "precomp" in rows["vsekit"]["components"]["dataset_reader"]


def test_real_process_exit_code_and_stderr(tmp_path):
    """Through ``python -m vsekit``: exit status 2, one error line, no traceback, no run folder."""
    path = tmp_path / "bad.toml"
    path.write_text('[data]\ntype = "precomp"\ndir = "vsekit:f8k_mini"\n'
                    '[model]\ndim = 0\n[loss]\ntype = "contrastive"\n')
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "vsekit", "run", str(path)], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {path}: [model] dim: expected a number > 0, got 0"]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


# --------------------------------------------------------------------------
# issue 11 item 8: every user error is one `error:` line and exit 2, from the one funnel (cli.user_errors)


def assert_one_error_line(code: int, stdout: str, stderr: str, *needles: str) -> str:
    assert code == 2, (code, stdout, stderr)
    assert stdout == "", stdout
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


USAGE_CASES = {
    "bad value": (["run", "SPEC", "--seeds", "0"], ["--seeds", "0 is not in the range", "vsekit run --help"]),
    "unknown option": (["run", "SPEC", "--sedes", "2"], ["No such option '--sedes'", "--seeds"]),
    "missing argument": (["run"], ["Missing argument 'SPEC'", "vsekit run"]),
    "unknown command": (["rnu", "SPEC"], ["No such command 'rnu'"]),
    "unknown group option": (["--verbose", "run", "SPEC"], ["No such option '--verbose'"]),
    "option without its value": (["validate", "SPEC", "--set"], ["--set", "requires an argument"]),
}


@pytest.mark.parametrize("argv,needles", USAGE_CASES.values(), ids=list(USAGE_CASES))
def test_click_usage_errors_are_one_error_line(argv, needles):
    spec = str(EXAMPLES / "quickstart.toml")
    result = CliRunner().invoke(cli, [spec if a == "SPEC" else a for a in argv], obj={})
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, result.exc_info
    assert_one_error_line(result.exit_code, result.stdout, result.stderr, *needles)


def test_usage_error_in_a_real_process_is_one_line():
    """The installed entry point (``main``) with plugin commands loaded, as a user runs it."""
    proc = subprocess.run([sys.executable, "-c", "from vsekit.cli import main; main()", "run",
                           str(EXAMPLES / "quickstart.toml"), "--seeds", "0"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert_one_error_line(proc.returncode, proc.stdout, proc.stderr, "--seeds")


def test_debug_shows_the_usage_error_traceback():
    import click

    result = CliRunner().invoke(cli, ["--debug", "run", str(EXAMPLES / "quickstart.toml"), "--seeds", "0"], obj={})
    assert isinstance(result.exception, click.BadParameter), result.exception
    assert "error:" not in result.stderr


USER_ENCODER = '''
import attrs
from vsekit.text.bow import BoWEncoder


class Enc(BoWEncoder):
    @attrs.frozen
    class Config:
        hidden: int = attrs.field(default=8, validator=attrs.validators.gt(0))
        mode: str = attrs.field(default="a", validator=attrs.validators.in_(["a", "b"]))
        scale: float = 1.0


class Odd(BoWEncoder):
    @attrs.frozen
    class Config:
        both: "int | str" = 3  # no cattrs hook for this union: the component's author must add one


class Picky(BoWEncoder):
    @attrs.frozen
    class Config:
        n: int = 2

        def __attrs_post_init__(self):
            if self.n % 2:
                raise RuntimeError("n must be even")
'''

CONFIG_CASES = {
    # a string for an int: the strict int hook
    "string for int": ("Enc", {"hidden": '"wide"'}, ["[model.sentence_encoder] hidden: expected int, got 'wide'"]),
    # attrs' own validators raise a plain ValueError from __init__
    "attrs gt": ("Enc", {"hidden": "-4"}, ["[model.sentence_encoder] hidden:", "> 0", "-4"]),
    "attrs in_": ("Enc", {"mode": '"c"'}, ["[model.sentence_encoder] mode:", "'c'"]),
    "bool for float": ("Enc", {"scale": "true"}, ["[model.sentence_encoder] scale: expected float, got True"]),
    "unsupported field type": ("Odd", {"both": "1"}, ["sentence_encoder", "int | str"]),
    "post-init check": ("Picky", {"n": "3"}, ["sentence_encoder", "n must be even"]),
}


@pytest.mark.parametrize("cls,values,needles", CONFIG_CASES.values(), ids=list(CONFIG_CASES))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_user_components_bad_config_is_one_error_line(tmp_path, command, cls, values, needles):
    (tmp_path / "enc.py").write_text(USER_ENCODER, encoding="utf-8")
    body = "".join(f"{k} = {v}\n" for k, v in values.items())
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[data]\ntype = "precomp"\ndir = "vsekit:f8k_mini"\n[model]\ndim = 16\n'
                    f'[model.sentence_encoder]\ntype = "enc.py:{cls}"\n{body}[loss]\ntype = "infonce"\n',
                    encoding="utf-8")
    result = CliRunner().invoke(cli, [command, str(spec), "--out", str(tmp_path / "run")] if command == "run"
                                else [command, str(spec)], obj={})
    assert isinstance(result.exception, SystemExit), result.exc_info
    line = assert_one_error_line(result.exit_code, result.stdout, result.stderr, str(spec), *needles)
    assert "Traceback" not in line
    assert not (tmp_path / "run").exists()


def test_several_problems_are_one_error_line_each(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[data]\ntype = "precomp"\ndir = "vsekit:f8k_mini"\n[model]\ndim = 0\n'
                    '[loss]\ntype = "infonce"\n[train]\nlr = -1.0\nbatch_size = "big"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(spec)], obj={})
    assert result.exit_code == 2 and result.stdout == "", result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"error: {spec}: [") for line in lines), lines
    assert {"[model] dim", "[train] lr", "[train] batch_size"} == {line.split(": ")[2] for line in lines}, lines


def test_the_funnel_is_the_only_exit():
    """No module but vsekit/cli/__init__.py exits or prints an error line itself: commands raise VsekitError."""
    sources = sorted((REPO / "vsekit").rglob("*.py")) + sorted((REPO / "plugins").glob("*/*/**/*.py"))
    offenders = []
    for f in sources:
        if f.relative_to(REPO).parts == ("vsekit", "cli", "__init__.py") or "tests" in f.relative_to(REPO).parts:
            continue
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(s in code for s in ("sys.exit(", "ctx.exit(", "raise SystemExit", "os._exit(",
                                       'echo(f"error', "echo('error", 'echo("error')):
                offenders.append(f"{f.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
