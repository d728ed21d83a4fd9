"""Region features: (N, K, D) precomp folders read memory-mapped, trained with the ``mean`` and ``gpo`` encoders.

The region folder is made from the packaged Flickr8K slice (``vsekit:f8k_mini``, 1280-d rows, float16,
each row about unit length): each image's first ``DIM`` feature values, copied ``K`` = 36 times with
independent Gaussian noise of standard deviation ``SIGMA`` = 0.02 added to each copy (about the
features' own per-value standard deviation, 0.023), stored float32; image i keeps ``36 - i % 7`` regions,
the rest are zero rows (padding, as files with fewer boxes than K hold).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vsekit.api import eval_checkpoint
from vsekit.data.readers import PrecompReader, Split
from vsekit.errors import DataError
from vsekit.metrics import chance_rsum
from vsekit.model import encode_images
from vsekit.testing import F8K_MINI, run_quick, tiny_spec

K, DIM, SIGMA = 36, 64, 0.02


def region_folder(dest: Path, n_train: int = 1000) -> Path:
    """A precomp folder of (N, 36, 64) float32 region features made from vsekit:f8k_mini (see the module doc)."""
    rng = np.random.default_rng(0)
    src = PrecompReader(PrecompReader.Config(dir=F8K_MINI))
    dest.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", 200), ("test", 200)):
        s = src.read(split).subset(n)
        base = s.images[:, :DIM].astype(np.float32)
        regions = base[:, None, :] + SIGMA * rng.standard_normal((len(base), K, DIM)).astype(np.float32)
        for i in range(len(regions)):
            regions[i, K - i % 7 :] = 0.0
        np.save(dest / f"{split}_ims.npy", regions)
        (dest / f"{split}_caps.txt").write_text("".join(c + "\n" for c in s.captions), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def regions(tmp_path_factory) -> Path:
    return region_folder(tmp_path_factory.mktemp("regions"))


def test_a_region_file_is_memory_mapped_and_kept_as_stored(tmp_path):
    folder = region_folder(tmp_path, n_train=30)
    feats = np.load(folder / "dev_ims.npy").astype(np.float16)
    np.save(folder / "dev_ims.npy", feats)
    s = PrecompReader(PrecompReader.Config(dir=str(folder))).read("dev")
    assert isinstance(s.images, np.memmap) and s.images.dtype == np.float16
    assert s.images.shape == (200, K, DIM) and s.dim_image == DIM and s.n_images == 200
    assert np.array_equal(s.subset(10).images, feats[:10])


def test_a_row_per_caption_region_file_is_collapsed_without_copying(tmp_path):
    folder = region_folder(tmp_path, n_train=30)
    feats = np.load(folder / "test_ims.npy")
    np.save(folder / "test_ims.npy", np.repeat(feats, 5, axis=0))
    s = PrecompReader(PrecompReader.Config(dir=str(folder))).read("test")
    assert s.report["layout"] == "row-per-caption" and isinstance(s.images, np.memmap)
    assert np.array_equal(s.images, feats)


def test_nan_in_a_region_names_the_row(tmp_path):
    folder = region_folder(tmp_path, n_train=30)
    feats = np.load(folder / "dev_ims.npy")
    feats[13, 5, 2] = np.nan
    np.save(folder / "dev_ims.npy", feats)
    with pytest.raises(DataError, match=r"dev_ims\.npy: .*NaN or inf in 1 row\(s\), first row 13"):
        PrecompReader(PrecompReader.Config(dir=str(folder))).read("dev")


def test_a_4d_file_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 4, 5), dtype=np.float32))
    with pytest.raises(DataError, match="3-D"):
        Split("x", ["a"] * 10, np.load(tmp_path / "x.npy"), np.arange(10) // 5)


def test_encode_images_takes_region_chunks(regions):
    from vsekit.image.pooled import GPOImageEncoder, MeanImageEncoder
    from vsekit.model import JointModel
    from vsekit.spec.component import build_component

    feats = np.load(regions / "test_ims.npy", mmap_mode="r")
    for name in ("mean", "gpo"):
        model = JointModel.build(build_component("sentence_encoder", {"type": "bow"}, "s", Path(".")),
                                 build_component("image_encoder", {"type": name}, "i", Path(".")), _vocab(), 16, DIM)
        assert isinstance(model.image_encoder, MeanImageEncoder if name == "mean" else GPOImageEncoder)
        whole = encode_images(model, feats, batch_size=10_000)
        chunked = encode_images(model, feats, batch_size=36 * 7)  # 7 images a chunk
        assert whole.shape == (200, 16) and np.allclose(whole, chunked, atol=1e-6)
        with torch.no_grad():
            one = torch.nn.functional.normalize(model.image_encoder(torch.from_numpy(np.array(feats[3:4]))), dim=-1)
        assert np.allclose(whole[3], one.numpy()[0], atol=1e-6)


def _vocab():
    from vsekit.data.vocab import Vocab

    return Vocab.build([["a", "dog"]])


def test_region_features_with_the_linear_encoder_are_refused(regions, tmp_path):
    from vsekit.errors import SpecError

    spec = tiny_spec(data={"type": "precomp", "dir": str(regions)})
    with pytest.raises(SpecError, match=r"mean.*gpo"):
        run_quick(spec, tmp_path / "run")


@pytest.mark.parametrize("encoder", ["mean", "gpo"])
def test_region_features_train_above_chance(regions, tmp_path, encoder):
    spec = tiny_spec(data={"type": "precomp", "dir": str(regions)}, image_encoder={"type": encoder})
    res = run_quick(spec, tmp_path / encoder, "train.lr=0.01")  # measured: rsum 61.5 (mean), 67.5 (gpo)
    chance = chance_rsum(200, 5)  # 15.9 for 200 test images, 5 captions each
    assert res["test"]["rsum"] > 2 * chance, res["test"]
    again, _ = eval_checkpoint(tmp_path / encoder, "test", verbose=False, log_warnings=False)  # the saved model
    assert again["rsum"] == pytest.approx(res["test"]["rsum"])


def test_gru_gpo_sentence_pooling_trains_and_its_checkpoint_loads(regions, tmp_path):
    spec = tiny_spec(data={"type": "precomp", "dir": str(regions)}, image_encoder={"type": "mean"},
                     sentence_encoder={"type": "gru", "dim_word": 32, "pooling": "gpo"})
    res = run_quick(spec, tmp_path / "run", "train.lr=0.01")
    assert res["test"]["rsum"] > 2 * chance_rsum(200, 5), res["test"]
    again, _ = eval_checkpoint(tmp_path / "run", "test", verbose=False, log_warnings=False)
    assert again["rsum"] == pytest.approx(res["test"]["rsum"])
