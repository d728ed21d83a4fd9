"""all-MiniLM-L6-v2's input embeddings as word vectors for a GRU's vocabulary (``[model.sentence_encoder]
word_vectors``): a word's vector is the mean of its word pieces' input embeddings (384-d).

    vsekit minilm-words CAPTIONS.txt... -o minilm_words.txt

writes one line per distinct token of the captions (vsekit's tokenizer, ``--tokenizer``, as training uses),
in the text format :func:`vsekit.text.word_vectors.read_word_vectors` reads. A GRU initialised from them
is no longer trained from scratch: report it as its own row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from vsekit.errors import VsekitError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["word_vectors", "words_cmd"]


def word_vectors(words: Sequence[str], model_dir: str | Path | None = None) -> np.ndarray:
    """(len(words), 384) float32: each word's mean word-piece input embedding (no special tokens).
    A word the tokenizer gives no piece for gets the ``[UNK]`` piece's embedding."""
    import numpy as np

    from vsekit_minilm.encoder import default_model_dir, load_backbone  # transformers and torch: on use only

    tokenizer, bert = load_backbone(Path(model_dir) if model_dir else default_model_dir())
    table = bert.embeddings.word_embeddings.weight.detach().float().numpy()
    out = np.empty((len(words), table.shape[1]), dtype=np.float32)
    for i, w in enumerate(words):
        ids = tokenizer(w, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id]
        out[i] = table[ids].mean(axis=0)
    return out


@click.command("minilm-words")
@click.argument("captions", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The word-vector file to write (it must not exist).")
@click.option("--tokenizer", default="regex", show_default=True, help="vsekit's tokenizer, as the run's [model].")
def words_cmd(captions: tuple[Path, ...], output: Path, tokenizer: str) -> None:
    """Write MiniLM's word-piece input embeddings (384-d) for every token of CAPTIONS (files, a caption a
    line) as word vectors for a GRU (`[model.sentence_encoder] word_vectors`, `dim_word = 384`)."""
    from vsekit.data.tokenize import tokenize_all, tokenizer_problem  # (imports torch: not at `vsekit --help`)
    from vsekit.io import atomic_write_text, read_lines

    if output.exists():
        raise VsekitError(f"{output}: exists; choose another -o (this never replaces a file)")
    if problem := tokenizer_problem(tokenizer):
        raise VsekitError(f"--tokenizer: {problem}")
    texts = [c for path in captions for c in read_lines(path, "caption")]
    words = sorted({t for tokens in tokenize_all(texts, tokenizer) for t in tokens if " " not in t})
    vectors = word_vectors(words)
    atomic_write_text(output, "".join(w + " " + " ".join(f"{x:.6g}" for x in v) + "\n"
                                      for w, v in zip(words, vectors, strict=True)))
    click.echo(f"{output}: {len(words)} words, {vectors.shape[1]}-d")
