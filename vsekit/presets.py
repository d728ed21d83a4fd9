"""Named dataset presets (``f8k``, ``f30k``, ``coco``) under a data root."""


def resolve_preset(name, root=None):  # pragma: no cover - filled in by the fidelity work
    return None
