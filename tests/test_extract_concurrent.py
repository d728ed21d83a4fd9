"""Two real ``python -m vsekit extract`` processes into one output: both sets of rows end up in the file.

The extractor (a file named by a component TOML, ``type = "rendezvous.py:Rendezvous"``) waits in its first
``extract`` call until both processes have reached it, so each has read the (empty) output before either
commits: the second commit must re-read the first one's rows (under the file's lock) instead of writing over
them. Rows are byte histograms, so the expected row of each image is computed here from its bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from vsekit.image.cache import ids_path

REPO = Path(__file__).resolve().parent.parent

EXTRACTOR = '''
import os
import time
from pathlib import Path

import attrs
import numpy as np

from vsekit.image.base import Extracted, ImageFeatureExtractor


class Rendezvous(ImageFeatureExtractor):
    """4-d byte histograms; the first call waits (at most 120 s) until `parties` processes have made it."""

    @attrs.frozen
    class Config:
        folder: str = ""
        parties: int = 2

    waited = False

    @property
    def dim(self):
        return 4

    def extract(self, paths):
        if not self.waited:
            folder = Path(self.config.folder)
            (folder / str(os.getpid())).write_text("here")
            deadline = time.monotonic() + 120
            while len(list(folder.iterdir())) < self.config.parties and time.monotonic() < deadline:
                time.sleep(0.05)
            self.waited = True
        rows = [np.bincount(np.frombuffer(Path(p).read_bytes(), np.uint8) % 4, minlength=4) for p in paths]
        return Extracted(np.array(rows, np.float32), np.ones(len(rows), bool), {}, [])
'''


def hist(data: bytes) -> np.ndarray:
    return np.bincount(np.frombuffer(data, np.uint8) % 4, minlength=4).astype(np.float32)


def test_two_extract_processes_into_one_output_keep_both_sets_of_rows(tmp_path):
    (tmp_path / "rendezvous.py").write_text(EXTRACTOR, encoding="utf-8")
    (tmp_path / "met").mkdir()
    (tmp_path / "ext.toml").write_text(f'type = "rendezvous.py:Rendezvous"\nfolder = "{tmp_path / "met"}"\n',
                                       encoding="utf-8")
    expected = {}
    for group in ("a", "b"):
        (tmp_path / group).mkdir()
        for i in range(3):
            data = f"image {group}{i} ".encode() * (5 + i) + bytes([i, 7 * i + 3])
            (tmp_path / group / f"{group}{i}.jpg").write_bytes(data)
            expected[f"{group}{i}.jpg"] = hist(data)
    out = tmp_path / "out" / "feats.npy"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "vsekit", "extract", str(tmp_path / "ext.toml"),
                               str(tmp_path / group), "-o", str(out), "-q"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for group in ("a", "b")]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr
        assert "3 added" in stdout, stdout
    assert len(list((tmp_path / "met").iterdir())) == 2  # both reached the extractor
    ids = ids_path(out).read_text(encoding="utf-8").split()
    assert sorted(ids) == sorted(expected)
    rows = np.load(out)
    np.testing.assert_array_equal(rows, np.array([expected[i] for i in ids]))
