"""A plugin whose import fails: vsekit must skip it with one warning and keep working."""

import vsekit_no_such_dependency  # noqa: F401  (deliberately missing)
