"""Caption tokenizers: the one registry, :data:`TOKENIZERS`, that turns text into tokens on every path.

Readers return text; a model's tokenizer (``[model] tokenizer``, recorded in
its checkpoint) turns it into tokens in training, evaluation, encoding, bank
building and retrieval alike.

- ``regex`` (the default): lowercase, then ``\\w+|'\\w+|[^\\w\\s]`` -- the
  tokenization of the reference EfficientNet-Lite0 feature release (``the
  dog's mouth`` -> ``the dog 's mouth``). It reads raw text and gives its
  own output back unchanged, so it suits raw captions, a query typed as
  plain text, and precomp files it tokenized (on the embedded f8k_mini and
  the Flickr8K EfficientNet-Lite0 release it gives exactly their
  whitespace tokens).
- ``lower_split``: lowercase, then split on whitespace; for pre-tokenized
  files whose tokens ``regex`` would cut further (``do n't``, ``t-shirt``).
- ``split``: ``str.split()`` as is; what the reference code did (imported
  reference models).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence

from vsekit.errors import SpecError

TOKEN_RE = re.compile(r"\w+|'\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into word and punctuation tokens (the ``regex`` tokenizer)."""
    return TOKEN_RE.findall(text.lower())


def split_tokens(text: str) -> list[str]:
    """Tokens of a pre-tokenized line, case kept (what ``str.split()`` returns; the ``split`` tokenizer)."""
    return text.split()


def lower_split_tokens(text: str) -> list[str]:
    """Tokens of a pre-tokenized line, lowercased (the ``lower_split`` tokenizer)."""
    return text.lower().split()


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    "regex": tokenize,
    "lower_split": lower_split_tokens,
    "split": split_tokens,
}
#: the tokenizer when ``[model] tokenizer`` is unset, and of a checkpoint that records none (``ModelSpec``
#: spells the same name)
DEFAULT = "regex"


def tokenizer_problem(name: object) -> str | None:
    """Why ``name`` is not a known tokenizer (naming the close known names), or None when it is one."""
    if isinstance(name, str) and name in TOKENIZERS:
        return None
    close = difflib.get_close_matches(str(name), TOKENIZERS, n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown tokenizer {name!r}: {hint}known: {', '.join(sorted(TOKENIZERS))}"


def get_tokenizer(name: str) -> Callable[[str], list[str]]:
    """The tokenizer called ``name``. Raises :class:`~vsekit.errors.SpecError` naming the close known names."""
    problem = tokenizer_problem(name)
    if problem:
        raise SpecError(problem)
    return TOKENIZERS[name]


def tokenize_all(texts: Iterable[str | Sequence[str]], name: str) -> list[list[str]]:
    """Token lists (one per text) by the tokenizer ``name``.

    A token list (not a string) is joined with spaces and tokenized again, so
    it too goes through the model's tokenizer (every built-in tokenizer gives
    its own output back unchanged). Raises :class:`SpecError` for an unknown name.
    """
    tok = get_tokenizer(name)
    return [tok(t) if isinstance(t, str) else tok(" ".join(t)) for t in texts]
