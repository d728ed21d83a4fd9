"""Registers the sentence encoder name ``meanpool``, which vsekit-testplugin registers too."""

from vsekit import hookimpl
from vsekit.text.bow import BoWEncoder


class OtherMeanPool(BoWEncoder):
    """A different class under a taken name."""


@hookimpl
def register_sentence_encoders(register):
    register("meanpool", OtherMeanPool)
