"""Caption tokenization: lowercase, then ``\\w+|'\\w+|[^\\w\\s]``.

This is the tokenization of the reference EfficientNet-Lite0 feature release
(``the dog's mouth`` -> ``the dog 's mouth``). Pre-tokenized caption files
(one caption per line, tokens separated by spaces) are split on whitespace.
"""

from __future__ import annotations

import re

TOKEN_RE = re.compile(r"\w+|'\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into word and punctuation tokens."""
    return TOKEN_RE.findall(text.lower())


def split_tokens(text: str) -> list[str]:
    """Tokens of a pre-tokenized line (what ``str.split()`` returns)."""
    return text.split()


TOKENIZERS = {"regex": tokenize, "split": split_tokens}
