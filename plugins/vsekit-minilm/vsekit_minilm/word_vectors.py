"""all-MiniLM-L6-v2's input embeddings as word vectors for a GRU's vocabulary (``[model.sentence_encoder]
word_vectors``): a word's vector is the mean of its word pieces' input embeddings (384-d).

    python -m vsekit_minilm.word_vectors CAPTIONS.txt... -o minilm_words.txt

writes one line per distinct token of the captions (vsekit's tokenizer, ``--tokenizer``, as training uses),
in the text format :func:`vsekit.text.word_vectors.read_word_vectors` reads. A GRU initialised from them
is no longer trained from scratch: report it as its own row.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vsekit.data.tokenize import DEFAULT, tokenize_all
from vsekit.errors import VsekitError
from vsekit.io import atomic_write_text, read_lines
from vsekit_minilm.encoder import _load_backbone, default_model_dir

__all__ = ["word_vectors"]


def word_vectors(words: Sequence[str], model_dir: str | Path | None = None) -> np.ndarray:
    """(len(words), 384) float32: each word's mean word-piece input embedding (no special tokens).
    A word the tokenizer gives no piece for gets the ``[UNK]`` piece's embedding."""
    tokenizer, bert = _load_backbone(Path(model_dir) if model_dir else default_model_dir())
    table = bert.embeddings.word_embeddings.weight.detach().float().numpy()
    out = np.empty((len(words), table.shape[1]), dtype=np.float32)
    for i, w in enumerate(words):
        ids = tokenizer(w, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id]
        out[i] = table[ids].mean(axis=0)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vsekit_minilm.word_vectors", description=__doc__.splitlines()[0])
    ap.add_argument("captions", nargs="+", type=Path, help="caption files, one caption a line")
    ap.add_argument("-o", "--output", type=Path, required=True, help="the word-vector file to write (must not exist)")
    ap.add_argument("--tokenizer", default=DEFAULT, help=f"vsekit's tokenizer of the run (default {DEFAULT!r})")
    args = ap.parse_args(argv)
    try:
        if args.output.exists():
            raise VsekitError(f"{args.output}: exists; choose another -o (this never replaces a file)")
        captions = [c for path in args.captions for c in read_lines(path, "caption")]
        words = sorted({t for tokens in tokenize_all(captions, args.tokenizer) for t in tokens if " " not in t})
        vectors = word_vectors(words)
        atomic_write_text(args.output, "".join(w + " " + " ".join(f"{x:.6g}" for x in v) + "\n"
                                               for w, v in zip(words, vectors, strict=True)))
    except (VsekitError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output}: {len(words)} words, {vectors.shape[1]}-d")
    return 0


if __name__ == "__main__":
    sys.exit(main())
