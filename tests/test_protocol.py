"""The evaluation protocol when captions per image vary (3 to 7), strict mode, and COCO 1K + 5K in one eval.

Expected values are derived independently: a literal loop picks each image's first min(n, 5) captions in file
order and counts ranks by their definition; chance values are enumerated over every caption order.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vsekit import api, metrics
from vsekit.cli import cli
from vsekit.data.readers import PrecompReader, Split
from vsekit.data.vocab import Vocab
from vsekit.errors import DataError, ProtocolError
from vsekit.evaluate import evaluate_split, is_coco_data, table_rows, wants_coco_rows
from vsekit.image.linear import LinearImageEncoder
from vsekit.model import JointModel, encode_images, encode_sentences
from vsekit.testing_data import F8K_MINI, run_quick
from vsekit.text.bow import BoWEncoder
from vsekit.training.stall import split_chance_rsum

MINI = Path(__file__).resolve().parents[1] / "vsekit" / "datasets" / "f8k_mini"

#: a dataset reader of ``SPLIT.json`` (a list of [image row, caption], in file order) and ``SPLIT_ims.npy``
READER_PY = '''
import json
from pathlib import Path

import attrs
import numpy as np

from vsekit.data.readers import DatasetReader, Split


class VaryingReader(DatasetReader):
    @attrs.frozen
    class Config:
        dir: str

    def read(self, split):
        d = Path(self.config.dir)
        rows = json.loads((d / f"{split}.json").read_text(encoding="utf-8"))
        return Split(split, [c for _, c in rows], np.load(d / f"{split}_ims.npy"), np.array([i for i, _ in rows]),
                     source=str(d / f"{split}.json"))
'''


def counts_for(n_images: int) -> list[int]:
    """Captions per image: 3, 6, 4, 7, 5, 3, ... (every count from 3 to 7)."""
    return [3 + (3 * i) % 5 for i in range(n_images)]


def varying_rows(split: str, n_images: int, seed: int = 0) -> list[tuple[int, str]]:
    """(image, caption) pairs from f8k_mini, counts_for() captions each, in a shuffled file order."""
    caps = (MINI / f"{split}_caps.txt").read_text(encoding="utf-8").splitlines()
    rows = [(i, caps[5 * i + j % 5] if j < 5 else f"also {caps[5 * i + j % 5]}")
            for i, n in enumerate(counts_for(n_images)) for j in range(n)]
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[k] for k in order]


def varying_split(split: str = "test", n_images: int = 50) -> Split:
    rows = varying_rows(split, n_images)
    feats = np.load(MINI / f"{split}_ims.npy")[:n_images]
    return Split(split, [c for _, c in rows], feats, np.array([i for i, _ in rows]), source=f"{split}.json")


def tiny_model(split: Split, seed: int = 0) -> JointModel:
    """A random BoW model (dim 8) whose vocabulary holds every word of the split."""
    torch.manual_seed(seed)
    words = sorted({w for c in split.captions for w in re.findall(r"\w+", c.lower())})
    vocab = Vocab(words)
    return JointModel(BoWEncoder(BoWEncoder.Config(), len(vocab), 8),
                      LinearImageEncoder(LinearImageEncoder.Config(), split.dim_image, 8), vocab).eval()


def literal_recalls(ims: np.ndarray, caps: np.ndarray, cap2img: list[int]) -> dict[str, float]:
    """R@1/5/10 and medr by the definitions, with each image's first min(n, 5) captions in file order."""
    used, seen = [], {}
    for j, i in enumerate(cap2img):
        if seen.get(i, 0) < 5:
            used.append(j)
            seen[i] = seen.get(i, 0) + 1
    c2i = [cap2img[j] for j in used]
    scores = ims @ caps[used].T
    r_i2t = []
    for i in range(len(ims)):
        own = [k for k, c in enumerate(c2i) if c == i]
        best = max(scores[i, k] for k in own)
        r_i2t.append(sum(1 for k in range(len(c2i)) if k not in own and scores[i, k] >= best))
    r_t2i = [sum(1 for i in range(len(ims)) if i != c2i[k] and scores[i, k] >= scores[c2i[k], k])
             for k in range(len(c2i))]
    out = {}
    for name, ranks in (("i2t", r_i2t), ("t2i", r_t2i)):
        for k in (1, 5, 10):
            out[f"{name}_r{k}"] = 100.0 * sum(r < k for r in ranks) / len(ranks)
        out[f"{name}_medr"] = math.floor(float(np.median(ranks))) + 1
    out["rsum"] = sum(v for key, v in out.items() if "_r" in key and "medr" not in key)
    return out


def test_evaluation_ranks_each_images_first_five_captions_in_file_order():
    split = varying_split("test", 50)
    model = tiny_model(split)
    m = evaluate_split(model, split, log_warnings=False)
    # encode everything, then pick and rank by the literal loop
    expect = literal_recalls(encode_images(model, split.images), encode_sentences(model, split.captions),
                             split.cap2img.tolist())
    for key, value in expect.items():
        assert m[key] == pytest.approx(value, abs=1e-9), key
    counts = counts_for(50)
    p = m["protocol"]
    assert p["caps_per_image_eval"] == metrics.EVAL_CAPS_PER_IMAGE == 5
    assert p["n_captions"] == sum(counts) == 250
    assert p["n_captions_eval"] == sum(min(n, 5) for n in counts) == 220
    assert p["images_with_fewer"] == sum(n < 5 for n in counts) == 20
    assert p["captions_dropped"] == sum(max(n - 5, 0) for n in counts) == 30
    assert p["caps_per_image"] == {"min": 3, "max": 7}
    assert p["coco_1k_and_5k"] is False and "1k" not in m
    fewer = [w for w in m["warnings"] if "fewer than 5 captions" in w]
    assert fewer == ["test: 20 of 50 images have fewer than 5 captions (fewest: 3); they are evaluated with the "
                     "captions they have, while the field's protocol ranks 5 per image (--strict-protocol refuses "
                     "such a split)"]


def test_five_captions_each_give_the_old_numbers_and_no_protocol_warning():
    from vsekit.testing_data import tiny_split

    split = tiny_split("test", 20)
    model = tiny_model(split)
    m = evaluate_split(model, split, log_warnings=False)
    assert m["protocol"]["images_with_fewer"] == 0 and m["protocol"]["captions_dropped"] == 0
    assert not [w for w in m["warnings"] if "fewer than" in w]
    whole = metrics.recall(encode_images(model, split.images), encode_sentences(model, split.captions), split.cap2img)
    assert m["rsum"] == whole["rsum"]


def test_strict_protocol_refuses_images_with_fewer_captions():
    split = varying_split("test", 50)
    with pytest.raises(ProtocolError, match=r"^test\.json: 20 of 50 images of split 'test' have fewer than 5"):
        evaluate_split(tiny_model(split), split, strict_protocol=True)
    # evalrank goes through the same function
    m = api.evalrank(tiny_model(split), split, print_table=False, verbose=False)
    assert m["protocol"]["images_with_fewer"] == 20
    with pytest.raises(ProtocolError, match="20 of 50"):
        api.evalrank(tiny_model(split), split, print_table=False, verbose=False, strict_protocol=True)


def test_eval_captions_keeps_the_first_in_file_order():
    ec = metrics.eval_captions(np.array([2, 0, 0, 2, 0, 0, 0, 0, 1]), 3, caps=5)
    assert ec.keep.tolist() == [0, 1, 2, 3, 4, 5, 6, 8]  # image 0's sixth caption (index 7) is dropped
    assert ec.used.tolist() == [5, 1, 2] and ec.images_with_fewer == 2 and ec.captions_dropped == 1


def test_chance_rsum_with_varying_counts_matches_enumeration():
    counts, ks = [1, 2, 3], (1, 2, 4)
    owner = [i for i, c in enumerate(counts) for _ in range(c)]
    hits = {k: 0.0 for k in ks}
    perms = list(itertools.permutations(range(len(owner))))
    for perm in perms:  # every caption order is equally likely under random scores
        for k in ks:
            hits[k] += sum(any(owner[j] == i for j in perm[:k]) for i in range(len(counts))) / len(counts)
    i2t = sum(hits[k] / len(perms) for k in ks)
    t2i = sum(min(k, 3) / 3 for k in ks)
    assert metrics.chance_rsum(3, counts, ks) == pytest.approx(100 * (i2t + t2i), rel=1e-12)
    assert metrics.chance_rsum(4, [5] * 4) == metrics.chance_rsum(4, 5)
    # the stall check uses the counts the evaluation ranks: 3..7 captions -> 3..5
    split = varying_split("test", 50)
    assert split_chance_rsum(split) == metrics.chance_rsum(50, [min(n, 5) for n in counts_for(50)])
    with pytest.raises(ValueError, match="2 counts for 3 images"):
        metrics.chance_rsum(3, [1, 2])


def test_coco_rows_on_a_parameterised_size():
    split = varying_split("test", 50)
    model = tiny_model(split)
    m = evaluate_split(model, split, coco_1k_and_5k=True, log_warnings=False)
    ims, caps = encode_images(model, split.images), encode_sentences(model, split.captions)
    c2i = split.cap2img.tolist()
    whole = literal_recalls(ims, caps, c2i)
    folds = []
    for f in range(5):  # five consecutive folds of 10 images, each against its own captions
        keep = [j for j, i in enumerate(c2i) if 10 * f <= i < 10 * f + 10]
        folds.append(literal_recalls(ims[10 * f: 10 * f + 10], caps[keep], [c2i[j] - 10 * f for j in keep]))
    for key, value in whole.items():
        assert m["5k"][key] == pytest.approx(value, abs=1e-9) and m[key] == pytest.approx(value, abs=1e-9)
        assert m["1k"][key] == pytest.approx(np.mean([d[key] for d in folds]), abs=1e-9), key
    assert len(m["1k"]["folds"]) == 5 and m["protocol"]["coco_1k_and_5k"] is True
    assert list(table_rows("test", m)) == ["test 10 (5-fold mean)", "test 50"]
    assert list(table_rows("test", {"rsum": 1.0})) == ["test"]
    with_folds = evaluate_split(model, split, folds=5, coco_1k_and_5k=True, log_warnings=False)
    assert with_folds["rsum"] == with_folds["1k"]["rsum"] == m["1k"]["rsum"]


def test_the_coco_rule():
    assert wants_coco_rows(None, "coco", 5000) and not wants_coco_rows(None, "coco", 1000)
    assert not wants_coco_rows(None, {"type": "precomp", "name": "f30k"}, 5000)
    assert wants_coco_rows(None, {"type": "precomp", "dir": "/d/coco", "name": "coco"}, 5000)
    assert wants_coco_rows(None, {"type": "karpathy", "json": "/d/dataset_coco.json"}, 5000)
    assert wants_coco_rows(None, {"type": "coco"}, 5000)
    assert wants_coco_rows(True, None, 50) and not wants_coco_rows(False, "coco", 5000)
    assert is_coco_data(PrecompReader(PrecompReader.Config(dir="/d/coco", name="coco")))
    assert not is_coco_data(PrecompReader(PrecompReader.Config(dir=F8K_MINI)))


def test_precomp_error_names_caps_per_image(tmp_path):
    caps = (MINI / "test_caps.txt").read_text(encoding="utf-8").splitlines()
    feats = np.load(MINI / "test_ims.npy")
    one = tmp_path / "one"
    one.mkdir()
    (one / "test_caps.txt").write_text("".join(c + "\n" for c in caps[:20]), encoding="utf-8")
    np.save(one / "test_ims.npy", feats[:20])  # one caption per image, 20 images
    with pytest.raises(DataError, match="set caps_per_image = 1 in \\[data\\]"):
        PrecompReader(PrecompReader.Config(dir=str(one))).read("test")
    assert PrecompReader(PrecompReader.Config(dir=str(one), caps_per_image=1)).read("test").n_images == 20
    three = tmp_path / "three"
    three.mkdir()
    (three / "test_caps.txt").write_text("".join(c + "\n" for c in caps[:30]), encoding="utf-8")
    np.save(three / "test_ims.npy", feats[:10])
    with pytest.raises(DataError, match=r"caps_per_image = 3 in \[data\] fits these counts"):
        PrecompReader(PrecompReader.Config(dir=str(three))).read("test")


# --------------------------------------------------------------------------
# a run on a split of 3 to 7 captions per image, and the command line


@pytest.fixture(scope="module")
def varying_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("varying")
    for split, n in (("train", 40), ("dev", 20), ("test", 50)):
        (d / f"{split}.json").write_text(json.dumps(varying_rows(split, n, seed=1)), encoding="utf-8")
        np.save(d / f"{split}_ims.npy", np.load(MINI / f"{split}_ims.npy")[:n])
    (d / "varying_reader.py").write_text(READER_PY, encoding="utf-8")
    return d


def varying_spec(d: Path, **eval_keys) -> dict:
    return {"name": "varying", "data": {"type": f"{d / 'varying_reader.py'}:VaryingReader", "dir": str(d)},
            "model": {"dim": 8, "sentence_encoder": {"type": "bow"}, "image_encoder": {"type": "linear"}},
            "loss": {"type": "infonce"}, "train": {"max_epochs": 1, "batch_size": 32, "seed": 0, "threads": 1},
            "eval": {"split": "test", **eval_keys}}


@pytest.fixture(scope="module")
def varying_run(varying_data, tmp_path_factory) -> dict:
    return run_quick(varying_spec(varying_data), tmp_path_factory.mktemp("run") / "run")


def test_training_uses_every_caption_and_results_record_the_protocol(varying_run):
    assert varying_run["train_captions"] == sum(counts_for(40)) == 200
    p = varying_run["test"]["protocol"]
    assert (p["n_captions"], p["n_captions_eval"], p["images_with_fewer"], p["captions_dropped"]) == (250, 220, 20, 30)
    on_disk = json.loads((Path(varying_run["run_dir"]) / "results.json").read_text(encoding="utf-8"))
    assert on_disk["test"]["protocol"]["captions_dropped"] == 30
    assert on_disk["valid"]["protocol"]["images_with_fewer"] == 8  # 20 dev images: 8 with 3 or 4 captions
    assert any("fewer than 5 captions" in w for w in on_disk["warnings"])


def test_cli_eval_warns_and_strict_protocol_is_one_error_line(varying_run, tmp_path):
    runner = CliRunner()
    run_dir = varying_run["run_dir"]
    ok = runner.invoke(cli, ["eval", run_dir, "-q", "-o", str(tmp_path / "e.json"), "--trust-code"], obj={})
    assert ok.exit_code == 0, ok.output
    assert ok.stderr.count("warning: test: 20 of 50 images have fewer than 5 captions") == 1
    assert json.loads((tmp_path / "e.json").read_text())["protocol"]["images_with_fewer"] == 20
    bad = runner.invoke(cli, ["eval", run_dir, "-q", "--strict-protocol", "--trust-code"], obj={})
    assert bad.exit_code == 2, bad.output
    assert bad.stderr.count("error: ") == 1 and bad.stderr.startswith("error: ")
    assert "test.json: 20 of 50 images of split 'test' have fewer than 5 captions" in bad.stderr


def test_run_strict_protocol_refuses_before_training(varying_data, tmp_path):
    spec = tmp_path / "spec.toml"
    from vsekit.spec import dumps_toml

    spec.write_text(dumps_toml(varying_spec(varying_data)), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(spec), "--out", str(out), "-q", "--strict-protocol"], obj={})
    assert result.exit_code == 2, result.output
    assert result.stderr.count("error: ") == 1
    assert "dev.json: 8 of 20 images of split 'dev' have fewer than 5 captions" in result.stderr
    assert not (out / "best.json").exists()
    with pytest.raises(ProtocolError, match=r"dev\.json: 8 of 20"):
        api.train(varying_spec(varying_data, strict_protocol=True), tmp_path / "out2", quiet=True)


@pytest.mark.slow
def test_coco_5k_eval_prints_1k_and_5k(varying_run, tmp_path):
    """A 5,000-image split of the ``coco`` precomp layout (random features, 5 captions each) through ``vsekit eval``."""
    rng = np.random.default_rng(0)
    words = (MINI / "test_caps.txt").read_text(encoding="utf-8").split()[:400]
    d = tmp_path / "coco"
    d.mkdir()
    caps = [" ".join(rng.choice(words, 8)) for _ in range(25000)]
    (d / "coco_test_caps.txt").write_text("".join(c + "\n" for c in caps), encoding="utf-8")
    dim = np.load(MINI / "test_ims.npy", mmap_mode="r").shape[1]
    np.save(d / "coco_test_ims.npy", rng.standard_normal((5000, dim)).astype(np.float32))
    from vsekit.spec import dumps_toml

    data_spec = tmp_path / "coco.toml"
    spec = varying_spec(tmp_path)
    spec["data"] = {"type": "precomp", "dir": str(d), "name": "coco"}
    data_spec.write_text(dumps_toml(spec), encoding="utf-8")
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(cli, ["eval", varying_run["run_dir"], "--data", str(data_spec), "-q", "-o", str(out)],
                                obj={})
    assert result.exit_code == 0, result.output
    assert "test 1K (5-fold mean) |" in result.stdout and "test 5K" in result.stdout
    m = json.loads(out.read_text())
    model = api.load_model(varying_run["run_dir"])
    split = PrecompReader(PrecompReader.Config(dir=str(d), name="coco")).read("test")
    ims, txt = encode_images(model, split.images), encode_sentences(model, split.captions)
    assert m["5k"]["rsum"] == pytest.approx(metrics.recall(ims, txt, split.cap2img)["rsum"])
    fold = [metrics.recall(ims[k * 1000:(k + 1) * 1000], txt[k * 5000:(k + 1) * 5000],
                           split.cap2img[k * 5000:(k + 1) * 5000] - k * 1000)["rsum"] for k in range(5)]
    assert m["1k"]["rsum"] == pytest.approx(np.mean(fold))
    assert m["protocol"]["coco_1k_and_5k"] is True and m["rsum"] == m["5k"]["rsum"]
