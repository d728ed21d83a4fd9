"""The run spec: loading, one readable line per problem, --set overrides, paths, round trips."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from conftest import EXAMPLES, MINI

from vsekit import spec as spec_mod
from vsekit.errors import SpecError

GOOD = """\
name = "t"
[data]
type = "precomp"
dir = "vsekit:f8k_mini"
[model]
dim = 32
[model.sentence_encoder]
type = "gru"
dim_word = 16
[loss]
type = "contrastive"
margin = 0.2
"""


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, overrides=()) -> list[str]:
    """The lines of the SpecError that loading ``path`` raises."""
    with pytest.raises(SpecError) as info:
        spec_mod.load(path, overrides)
    return str(info.value).splitlines()


def only(lines: list[str]) -> str:
    assert len(lines) == 1, lines
    return lines[0]


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_load(path):
    s = spec_mod.load(path)
    assert s.source == str(path)
    assert s.data is not None and s.model is not None and s.loss is not None
    assert s.model.sentence_encoder is not None and s.model.image_encoder is not None
    assert s.eval.metric is not None


def test_quickstart_values():
    s = spec_mod.load(EXAMPLES / "quickstart.toml")
    raw = tomllib.loads((EXAMPLES / "quickstart.toml").read_text())
    assert s.name == raw["name"]
    assert s.data.type == "precomp" and s.data.config.dir == "vsekit:f8k_mini"
    assert s.model.dim == raw["model"]["dim"]
    assert s.model.sentence_encoder.type == raw["model"]["sentence_encoder"]["type"]
    assert s.model.sentence_encoder.config.dim_word == raw["model"]["sentence_encoder"]["dim_word"]
    assert s.loss.type == raw["loss"]["type"]
    assert s.train.max_epochs == raw["train"]["max_epochs"]
    assert s.train.lr == raw["train"]["lr"]
    # defaults fill what the file leaves out
    assert s.train.maxlen_w == spec_mod.TrainSpec().maxlen_w
    assert s.vocab == spec_mod.VocabSpec()


def test_defaults_for_encoders_and_metric(tmp_path):
    text = GOOD.replace("[model.sentence_encoder]\ntype = \"gru\"\ndim_word = 16\n", "")
    s = spec_mod.load(write(tmp_path, text))
    assert s.model.sentence_encoder.type == "gru"
    assert s.model.image_encoder.type == "linear"
    assert s.eval.metric.type == "recall"


def test_name_defaults_to_file_stem(tmp_path):
    s = spec_mod.load(write(tmp_path, GOOD.replace('name = "t"\n', ""), name="my_run.toml"))
    assert s.name == "my_run"


# --------------------------------------------------------------------------- one line per problem


def test_wrong_type(tmp_path):
    path = write(tmp_path, GOOD.replace("margin = 0.2", 'margin = "big"'))
    line = only(problems(path))
    assert line.startswith(f"{path}: [loss] margin: ")
    assert "float" in line and "'big'" in line


@pytest.mark.parametrize(
    "old,new,where,expected,got",
    [
        ("dim = 32", "dim = 3.5", "[model] dim", "int", "3.5"),
        ("dim = 32", "dim = true", "[model] dim", "int", "True"),
        ("dim_word = 16", 'dim_word = "16"', "[model.sentence_encoder] dim_word", "int", "'16'"),
        ("margin = 0.2", "margin = false", "[loss] margin", "float", "False"),
    ],
)
def test_wrong_types_name_section_field_expected_and_got(tmp_path, old, new, where, expected, got):
    path = write(tmp_path, GOOD.replace(old, new))
    line = only(problems(path))
    assert line.startswith(f"{path}: {where}: ")
    assert expected in line and got in line


def test_unknown_key_did_you_mean(tmp_path):
    path = write(tmp_path, GOOD + "marign = 0.3\n")
    line = only(problems(path))
    assert line.startswith(f"{path}: [loss] marign: unknown key")
    assert "did you mean 'margin'?" in line
    assert "same_image_negatives" in line  # lists the known keys


def test_unknown_key_in_plain_section(tmp_path):
    path = write(tmp_path, GOOD + "[train]\nbatchsize = 32\n")
    line = only(problems(path))
    assert line.startswith(f"{path}: [train] batchsize: unknown key")
    assert "did you mean 'batch_size'?" in line


def test_unknown_section(tmp_path):
    path = write(tmp_path, GOOD + "[trian]\nlr = 0.1\n")
    line = only(problems(path))
    assert line.startswith(f"{path}: [trian]")
    assert "unknown section" in line and "did you mean 'train'?" in line


@pytest.mark.parametrize(
    "table,kind,bad,close,known",
    [
        ("loss", "loss", "contrastiv", "contrastive", ["contrastive", "infonce", "max_violation"]),
        ("model.sentence_encoder", "sentence encoder", "gur", "gru", ["bow", "gru"]),
        ("data", "dataset reader", "precom", "precomp", ["flickr8k", "precomp"]),
    ],
)
def test_unknown_component_type(tmp_path, table, kind, bad, close, known):
    good_type = {"loss": "contrastive", "model.sentence_encoder": "gru", "data": "precomp"}[table]
    text = GOOD.replace(f'[{table}]\ntype = "{good_type}"', f'[{table}]\ntype = "{bad}"')
    assert text != GOOD
    if table == "loss":
        text = text.replace("margin = 0.2\n", "")
    if table == "data":
        text = text.replace('dir = "vsekit:f8k_mini"\n', "")
    path = write(tmp_path, text)
    line = only(problems(path))
    assert line.startswith(f"{path}: [{table}] type: unknown {kind} '{bad}'")
    for name in known:
        assert name in line
    assert f"did you mean '{close}'?" in line


def test_missing_sections(tmp_path):
    path = write(tmp_path, 'name = "x"\n')
    lines = problems(path)
    assert len(lines) == 3
    for section in ("data", "model", "loss"):
        assert any(ln.startswith(f"{path}: [{section}]") and "missing section" in ln for ln in lines), lines


@pytest.mark.parametrize(
    "override,where",
    [
        ("model.dim=0", "[model] dim"),
        ("model.dim=-4", "[model] dim"),
        ("model.sentence_encoder.dim_word=0", "[model.sentence_encoder] dim_word"),
        ("train.max_epochs=0", "[train] max_epochs"),
        ("train.batch_size=1", "[train] batch_size"),
        ("train.lr=-0.1", "[train] lr"),
        ("vocab.min_count=0", "[vocab] min_count"),
        ("loss.margin=-1.0", "[loss] margin"),
    ],
)
def test_bad_sizes(tmp_path, override, where):
    path = write(tmp_path, GOOD)
    value = override.split("=")[1]
    line = only(problems(path, [override]))
    assert line.startswith(f"{path}: {where}: expected ")
    assert f"got {value}" in line or f"got {float(value)}" in line


def test_every_problem_reported_at_once(tmp_path):
    """Two bad values in one section and problems in several sections: one line each."""
    path = write(tmp_path, GOOD + 'marign = 1.0\n[train]\nmax_epochs = 0\nbatch_size = 0\nlr = "x"\n'
                                  '[vocab]\nmin_count = 0\nmax_size = 0\n')
    lines = problems(path)
    assert any("[loss] marign" in ln for ln in lines)
    assert any("[train] lr" in ln and "'x'" in ln for ln in lines)
    assert any("[train] max_epochs" in ln and "got 0" in ln for ln in lines)
    assert any("[train] batch_size" in ln and "got 0" in ln for ln in lines)
    assert any("[vocab] min_count" in ln for ln in lines)
    assert any("[vocab] max_size" in ln for ln in lines)
    assert all(ln.startswith(f"{path}: [") for ln in lines)
    assert len(lines) == 6, lines


def test_missing_required_key(tmp_path):
    path = write(tmp_path, GOOD.replace('dir = "vsekit:f8k_mini"\n', ""))
    assert only(problems(path)) == f"{path}: [data] dir: missing required key"
    path = write(tmp_path, GOOD.replace('dir = "vsekit:f8k_mini"', "dir = 3"), name="t.toml")
    assert only(problems(path)) == f"{path}: [data] dir: expected str, got 3"


def test_list_items_named_by_index(tmp_path):
    path = write(tmp_path, GOOD + '[eval.metric]\ntype = "recall"\nks = [1, "5", 10]\n')
    assert only(problems(path)) == f"{path}: [eval.metric] ks[1]: expected int, got '5'"


@pytest.mark.parametrize("ks", ["[0, 5]", "[]", "[5, 5]"])
def test_recall_ks_validated(tmp_path, ks):
    path = write(tmp_path, GOOD + f'[eval.metric]\ntype = "recall"\nks = {ks}\n')
    line = only(problems(path))
    assert line.startswith(f"{path}: [eval.metric] ks: expected a non-empty list of distinct integers >= 1")


@pytest.mark.parametrize("section", ["train", "vocab", "eval", "output", "model"])
def test_section_that_is_not_a_table(tmp_path, section):
    text = GOOD.replace("[model]\ndim = 32\n[model.sentence_encoder]\ntype = \"gru\"\ndim_word = 16\n", "") \
        if section == "model" else GOOD
    path = write(tmp_path, f"{section} = 3\n" + text)
    line = only(problems(path))
    assert line.startswith(f"{path}: [{section}]") and "expected a table" in line and "got 3" in line


def test_train_device(tmp_path):
    path = write(tmp_path, GOOD)
    line = only(problems(path, ["train.device=gpu"]))
    assert line.startswith(f"{path}: [train] device: expected 'auto' or a torch device") and "'gpu'" in line
    for ok in ("cpu", "cuda", "cuda:1", "auto"):
        assert spec_mod.load(path, [f"train.device={ok}"]).train.device == ok


def test_bow_dim_word_must_equal_dim(tmp_path):
    text = GOOD.replace('type = "gru"\ndim_word = 16', 'type = "bow"\ndim_word = 16')
    path = write(tmp_path, text)
    line = only(problems(path))
    assert line.startswith(f"{path}: [model.sentence_encoder] dim_word: ")
    assert "32" in line and "16" in line
    # equal dims are fine
    ok = spec_mod.load(write(tmp_path, text.replace("dim_word = 16", "dim_word = 32"), name="ok.toml"))
    assert ok.model.sentence_encoder.type == "bow"


def test_not_toml(tmp_path):
    path = write(tmp_path, "[data\ntype = precomp\n")
    line = only(problems(path))
    assert line.startswith(f"{path}: not valid TOML")


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    line = only(problems(path))
    assert line.startswith(str(path))


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    line = only(problems(path))
    assert line == f"{path}: no such spec file"


def test_spec_error_is_a_vsekit_error_with_exit_code_2():
    from vsekit.errors import VsekitError

    assert issubclass(SpecError, VsekitError) and SpecError("x").exit_code == 2


# --------------------------------------------------------------------------- overrides


def test_overrides_typed_values(tmp_path):
    path = write(tmp_path, GOOD)
    s = spec_mod.load(path, [
        "train.lr=1e-4",             # float
        "train.max_epochs=3",        # int
        "train.bucket=false",        # bool
        "train.device=cuda:0",       # not TOML: taken as a string
        'name="other"',              # quoted string
        "loss.margin=0.5",
        "model.sentence_encoder.dim_word=8",  # nested key
        "model.sentence_encoder.bidirectional=true",
    ])
    assert s.train.lr == 1e-4 and isinstance(s.train.lr, float)
    assert s.train.max_epochs == 3 and isinstance(s.train.max_epochs, int)
    assert s.train.bucket is False
    assert s.train.device == "cuda:0"
    assert s.name == "other"
    assert s.loss.config.margin == 0.5
    assert s.model.sentence_encoder.config.dim_word == 8
    assert s.model.sentence_encoder.config.bidirectional is True


def test_override_creates_missing_table(tmp_path):
    s = spec_mod.load(write(tmp_path, GOOD), ["vocab.max_size=50", "eval.folds=5"])
    assert s.vocab.max_size == 50 and s.eval.folds == 5


def test_override_later_wins_and_file_untouched(tmp_path):
    path = write(tmp_path, GOOD)
    s = spec_mod.load(path, ["train.seed=1", "train.seed=7"])
    assert s.train.seed == 7
    assert path.read_text() == GOOD


@pytest.mark.parametrize("bad", ["train.lr", "=3", "train..lr=1", ".lr=1", "train.=1"])
def test_override_bad_syntax(tmp_path, bad):
    path = write(tmp_path, GOOD)
    line = only(problems(path, [bad]))
    assert line.startswith(f"--set {bad!r}: expected KEY=VALUE")


def test_override_into_a_value_is_refused(tmp_path):
    line = only(problems(write(tmp_path, GOOD), ["model.dim.x=1"]))
    assert "--set 'model.dim.x=1'" in line and "model.dim is not a table" in line


def test_override_wrong_type_reported_like_the_file(tmp_path):
    path = write(tmp_path, GOOD)
    line = only(problems(path, ["train.max_epochs=many"]))
    assert line.startswith(f"{path}: [train] max_epochs: ") and "'many'" in line


def test_parse_override_values():
    assert spec_mod.parse_override("a.b=1") == (["a", "b"], 1)
    assert spec_mod.parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert spec_mod.parse_override("a = true ") == (["a"], True)
    assert spec_mod.parse_override("a=x=y") == (["a"], "x=y")


# --------------------------------------------------------------------------- paths


def test_relative_paths_resolve_from_spec_folder(tmp_path, monkeypatch):
    sub = tmp_path / "specs" / "deep"
    sub.mkdir(parents=True)
    text = GOOD.replace('dir = "vsekit:f8k_mini"', 'dir = "../data/f8k"') + '[output]\ndir = "runs/x"\n'
    write(sub, text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = spec_mod.load(Path("..") / "specs" / "deep" / "spec.toml")
    assert Path(s.data.config.dir) == (tmp_path / "specs" / "data" / "f8k").resolve()
    assert Path(s.output.dir) == (sub / "runs" / "x").resolve()


def test_nested_component_paths_resolve(tmp_path):
    text = GOOD.replace(
        '[data]\ntype = "precomp"\ndir = "vsekit:f8k_mini"',
        '[data]\ntype = "flickr8k"\nroot = "f8k"\n[data.features]\ntype = "precomputed"\ndir = "feats"',
    )
    s = spec_mod.load(write(tmp_path, text))
    assert s.data.config.root == str((tmp_path / "f8k").resolve())
    assert s.data.config.features.type == "precomputed"
    assert s.data.config.features.config.dir == str((tmp_path / "feats").resolve())


def test_absolute_and_embedded_paths_kept(tmp_path):
    s = spec_mod.load(write(tmp_path, GOOD))
    assert s.data.config.dir == "vsekit:f8k_mini"
    s2 = spec_mod.load(write(tmp_path, GOOD.replace("vsekit:f8k_mini", str(MINI)), name="abs.toml"))
    assert s2.data.config.dir == str(MINI)


# --------------------------------------------------------------------------- round trip


ROUND_TRIP_EXTRA = """
[eval]
folds = 5
[eval.metric]
type = "recall"
ks = [1, 5]
[vocab]
min_count = 2
max_size = 100
[output]
dir = "out"
save_last = false
[train]
bucket = false
lr_schedule = "cosine"
"""


@pytest.mark.parametrize("variant", ["quickstart", "extra", "flickr8k", "max_violation"])
def test_round_trip(tmp_path, variant):
    if variant == "quickstart":
        path = EXAMPLES / "quickstart.toml"
    elif variant == "extra":
        path = write(tmp_path, GOOD + ROUND_TRIP_EXTRA)
    elif variant == "flickr8k":
        path = write(tmp_path, GOOD.replace(
            '[data]\ntype = "precomp"\ndir = "vsekit:f8k_mini"',
            '[data]\ntype = "flickr8k"\nroot = "f8k"\n[data.features]\ntype = "precomputed"\ndir = "feats"'))
    else:
        path = write(tmp_path, GOOD.replace('type = "contrastive"\nmargin = 0.2',
                                            'type = "max_violation"\nwarmup_epochs = 1.5'))
    s = spec_mod.load(path)
    d = s.to_dict()
    assert spec_mod.from_dict(d, source=s.source) == s
    text = spec_mod.dumps_toml(d)
    again = tomllib.loads(text)
    assert spec_mod.from_dict(again, source=s.source) == s
    # and from another folder: resolved paths are absolute, so nothing moves
    assert spec_mod.from_dict(again, source=s.source, base=tmp_path / "other") == s


def test_dumps_toml_escapes_strings():
    d = {"name": 'a "quoted" \\ name', "t": {"x": [1, 2.5, True, "s"]}}
    assert tomllib.loads(spec_mod.dumps_toml(d)) == d


def test_to_dict_is_plain_data(tmp_path):
    s = spec_mod.load(write(tmp_path, GOOD + ROUND_TRIP_EXTRA))

    def walk(v):
        if isinstance(v, dict):
            assert all(isinstance(k, str) for k in v)
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        else:
            assert v is None or isinstance(v, (str, int, float, bool)), repr(v)

    walk(s.to_dict())
    assert re.search(r"^\[eval\.metric\]$", spec_mod.dumps_toml(s.to_dict()), re.M)


def test_field_helpers_imported_from_spec_still_work_with_a_warning():
    """The validators moved to ``vsekit.config``; ``vsekit.spec`` hands them out with a DeprecationWarning."""
    from vsekit import config

    with pytest.warns(DeprecationWarning, match="use vsekit.config.positive"):
        from vsekit.spec import positive
    assert positive is config.positive
    with pytest.raises(AttributeError):
        spec_mod.no_such_name  # noqa: B018


def test_dumps_toml_reads_back_the_same_dict_without_none():
    import tomllib

    data = {"name": "x", "imports": ["a.py", "b"], "train": {"lr": 0.1, "seed": 3, "bucket": True},
            "model": {"dim": 8, "sentence_encoder": {"type": "gru", "note": 'q"\\\n\x01'}},
            "output": {"dir": None}, "eval": {}}
    back = tomllib.loads(spec_mod.dumps_toml(data))
    assert back == {**data, "output": {}}
