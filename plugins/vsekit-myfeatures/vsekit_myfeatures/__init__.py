"""vsekit-myfeatures: hand-made image features (colour + gradient-orientation histograms) as a vsekit plugin.

This module is what the ``vsekit`` entry point names, so it is imported by
every ``vsekit`` command: it stays tiny and imports the extractor (and
Pillow) only when the hook runs.
"""

from __future__ import annotations

from vsekit import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_image_feature_extractors(register):
    from vsekit_myfeatures.colorhist import ColorHistExtractor

    register("colorhist", ColorHistExtractor)
