"""vsekit-minilm: the pretrained all-MiniLM-L6-v2 sentence encoder as a vsekit plugin.

Importing this module is cheap (no transformers): the encoder module is
imported when the hook runs, and it imports transformers only when an
encoder is built.
"""

from __future__ import annotations

from vsekit import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_sentence_encoders(register):
    from vsekit_minilm.encoder import MiniLMEncoder

    register("minilm", MiniLMEncoder)


@hookimpl
def register_commands(cli):
    from vsekit_minilm.word_vectors import words_cmd

    cli.add_command(words_cmd)
