"""Control characters from data never reach the terminal raw (issue 16, kind 8).

A caption holding an OSC escape (``ESC ] 0 ; title BEL``), a carriage return or a bidi override is printed
escaped (``\\x1b``, ``\\x0d``, ``\\u202e``) by ``vsekit retrieve``, in ``--json`` as JSON escapes (the same data),
and in error lines; the bank file keeps the caption as it was.
"""

from __future__ import annotations

import json
import re

from bad_input_harness import invoke

from vsekit.retrieval import load_bank
from vsekit.textsafe import terminal_json, terminal_text

#: what a terminal must never receive raw: C0 but newline, DEL, C1, the bidi controls, U+2028/U+2029
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
EVIL = ["a dog \x1b]0;pwned\x07 runs on the grass", "a man\x08\x08 on a bike", "a girl \u202eyelsrev\u202c smiles",
        "two dogs \x9b31m play", "a cat\x7f sleeps"]


def test_terminal_text_escapes_controls_and_keeps_printable_unicode():
    assert terminal_text("ESC\x1b]0;t\x07 CR\r TAB\t NL\n NUL\x00 DEL\x7f CSI\x9b") == \
        "ESC\\x1b]0;t\\x07 CR\\x0d TAB\\x09 NL\\x0a NUL\\x00 DEL\\x7f CSI\\x9b"
    assert terminal_text("rlo\u202e lri\u2066 pdi\u2069 rlm\u200f alm\u061c ls\u2028") == \
        "rlo\\u202e lri\\u2066 pdi\\u2069 rlm\\u200f alm\\u061c ls\\u2028"
    kept = "café 日本語 🐕 naïve – “quoted” C:\\path ü\u00a0nbsp"
    assert terminal_text(kept) == kept
    assert terminal_text("a\x1b\nb", keep_newlines=True) == "a\\x1b\nb"


def test_terminal_json_is_the_same_json_data():
    data = {"text": "".join(EVIL), "ids": ["x\u202ey", None], "n": 3}
    raw = json.dumps(data, indent=1, ensure_ascii=False)
    safe = terminal_json(raw)
    assert json.loads(safe) == data and not RAW.search(safe)


def _bank(env):
    ckpt = env.ckpt()
    caps = env.root / "evil.txt"
    caps.write_text("".join(c + "\n" for c in EVIL), encoding="utf-8", newline="\n")
    bank = env.root / "bank"
    result = invoke(["bank", str(ckpt), "--captions", str(caps), "-o", str(bank)], env.root)
    assert result.exit_code == 0, result.output
    return ckpt, bank


def test_retrieve_prints_captions_escaped_and_the_bank_keeps_them(env):
    ckpt, bank = _bank(env)
    argv = ["retrieve", str(ckpt), "--features", str(env.npy("test")), "--bank", f"{bank}.json", "-k", "5"]
    result = invoke(argv, env.root)
    assert result.exit_code == 0, result.output
    assert not RAW.search(result.output), repr(result.output)
    for needle in ("\\x1b]0;pwned\\x07", "a man\\x08\\x08 on", "\\u202eyelsrev\\u202c", "\\x9b31m", "cat\\x7f"):
        assert needle in result.stdout, (needle, result.stdout)
    assert sorted(load_bank(f"{bank}.json").texts) == sorted(EVIL)  # the file is not a terminal: raw text
    as_json = invoke([*argv, "--json"], env.root)
    assert as_json.exit_code == 0 and not RAW.search(as_json.output)
    assert sorted(r["text"] for r in json.loads(as_json.stdout)["results"]) == sorted(EVIL)


def test_error_lines_quoting_data_are_escaped(env):
    ckpt = env.ckpt()
    name = "photo \x1b]0;pwned\x07\u202e.jpg"  # e.g. a file name listed in a data folder
    result = invoke(["retrieve", str(ckpt), "--image", name], env.root)
    assert result.exit_code == 2
    assert result.stderr.count("error: ") == 1 and not RAW.search(result.stderr), repr(result.stderr)
    assert "photo \\x1b]0;pwned\\x07\\u202e.jpg: no such image file" in result.stderr
