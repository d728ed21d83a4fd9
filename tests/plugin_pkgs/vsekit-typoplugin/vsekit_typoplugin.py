"""A plugin with a misspelled hook (``register_sentence_encoder``, no ``s``): must be an error, not silence."""

from vsekit import hookimpl
from vsekit.text.bow import BoWEncoder


@hookimpl
def register_sentence_encoder(register):
    register("typo_bow", BoWEncoder)
