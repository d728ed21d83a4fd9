"""``vsekit plugins``: the installed plugins, their versions, hooks, components and commands."""

from __future__ import annotations

import json
from typing import Any

import click

from vsekit.textsafe import terminal_json, terminal_text


def plugin_lines(info: dict[str, Any], kind_labels: dict[str, str]) -> list[str]:
    """The text listing of ``PluginManager.describe()``'s ``info``; ``kind_labels`` maps a kind to its label."""
    lines = []
    for p in info["plugins"]:
        dist = f" [{p['distribution']}]" if p["distribution"] and p["distribution"] != p["name"] else ""
        lines.append(f"{p['name']} {p['version'] or ''}{dist} ({p['module']})".replace("  ", " "))
        lines += [f"  {kind_labels[kind]}: {', '.join(names)}" for kind, names in p["components"].items()]
        if p["commands"]:
            lines.append(f"  commands: {', '.join(p['commands'])}")
    lines += [f"{name}: skipped ({why})" for name, why in info["skipped"].items()]
    lines += [f"{name}: disabled ({why})" for name, why in info["disabled"].items()]
    return lines


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_cmd(*, as_json: bool) -> None:
    """List plugins: versions, hooks and the components each registers; skipped and disabled ones."""
    from vsekit import registry
    from vsekit.hookspecs import KINDS

    info = registry.manager().describe()
    if as_json:
        click.echo(terminal_json(json.dumps(info, indent=1)))
        return
    for line in plugin_lines(info, {kind: labels[0] for kind, labels in KINDS.items()}):
        click.echo(terminal_text(line))  # a broken plugin's reason quotes its exception


COMMANDS = (plugins_cmd,)
