"""Text from data made safe for a terminal: control characters shown escaped, never sent raw.

A caption, an image id or a file name can hold an escape sequence (``ESC ] 0 ; title BEL`` retitles the
window; others move the cursor, clear the screen or hide text) or a bidi override (U+202E shows text
backwards). Everything the CLI prints that comes from data, and every error or warning line that quotes
data, goes through :func:`terminal_text`. Files (JSON, CSV, banks) keep the text as it is: they are not a
terminal.
"""

from __future__ import annotations

import re

#: C0 controls, DEL and C1 controls; the bidi embeddings, overrides, isolates and marks; line/paragraph
#: separators (a terminal or ``str.splitlines`` would break the line there)
_OTHERS = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_OTHERS}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f{_OTHERS}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(text: object, *, keep_newlines: bool = False) -> str:
    """``str(text)`` with every control character escaped: C0 (``\\x00``-``\\x1f``, tab and newline included),
    DEL and C1 (``\\x7f``-``\\x9f``) as ``\\x1b``, and the bidi controls (U+202A-U+202E, U+2066-U+2069,
    U+200E, U+200F, U+061C) and U+2028/U+2029 as ``\\u202e``. Printable Unicode (accents, CJK, emoji) and
    backslashes are kept as they are.

    ``keep_newlines``: leave ``\\n`` alone, for text of several lines that vsekit itself put together (a table);
    every other character of each line is escaped as above.
    """
    return (_UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE).sub(_escape, str(text))


def terminal_json(text: str) -> str:
    """JSON text (``json.dumps`` output) for a terminal: the characters :func:`terminal_text` escapes, written as
    JSON ``\\u`` escapes (newlines aside: ``json.dumps`` escapes those in strings and puts them between items).
    They can only occur inside JSON strings, so the result is the same JSON data."""
    return _UNSAFE_BUT_NEWLINE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
