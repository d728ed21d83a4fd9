"""CLI commands for the reference release's files (filled in by the fidelity work)."""


def add_commands(cli):  # pragma: no cover - placeholder until import-legacy/export-legacy land
    return None
