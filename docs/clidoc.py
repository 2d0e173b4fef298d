"""Writes docs/cli.md from the real argument parser, so the reference cannot drift from the code.

    python docs/clidoc.py > docs/cli.md
"""

from __future__ import annotations

import argparse

INTRO = """# xraybench command reference

Generated from the argument parser by `python docs/clidoc.py > docs/cli.md`; a test fails
when this file and the code disagree. Every command prints a one-line `error: ...` and exits
with status 2 on bad input; `run` exits 1 when any run did not finish (`error`, `timeout`),
`tune` 1 when every trial failed; 130 on Ctrl-C and 143 on SIGTERM, either way with the run in
flight recorded as `interrupted` and no child process left. `--disable-plugin` goes before or
after the command.

Environment: `XRAYBENCH_DATA` (data path), `XRAYBENCH_CACHE` (decoded-image cache, default
the user cache folder), `XRAYBENCH_RESULTS` (results folder, default `./leaderboards`),
`XRAYBENCH_DISABLE_PLUGINS` (comma-separated plugin or distribution names),
`XRAYBENCH_PLUGINS` (extra plugin modules to load, comma-separated), {backend_rule}.
"""


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue  # hidden options (an older name kept working) are not documented
        if action.option_strings:
            flags = ", ".join(f"`{o}`" for o in action.option_strings)
            if action.nargs != 0 and action.metavar:
                flags += f" `{action.metavar}`"
            elif action.nargs != 0 and action.choices:
                flags += " `{" + ",".join(map(str, action.choices)) + "}`"
        else:
            flags = f"`{action.metavar or action.dest}`"
        default = "" if action.default in (None, False, [], argparse.SUPPRESS) else f" (default: `{action.default}`)"
        text = (action.help or "").replace("|", "\\|")
        rows.append(f"| {flags} | {text}{default} |")
    return rows


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, one-line help) of each subcommand of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, sub, helps.get(name, "")) for name, sub in action.choices.items()]
    return []


def render() -> str:
    from xraybench.cli import build_parser

    parser = build_parser()
    from xraybench.training.backend import RULE

    out = [INTRO.replace("{backend_rule}", RULE), "## Global options\n", "| option | meaning |", "|---|---|",
           *_option_rows(parser), ""]

    def section(prefix: str, sub: argparse.ArgumentParser, help_text: str) -> None:
        out.extend([f"## `xraybench {prefix}`\n", help_text[:1].upper() + help_text[1:] + ".\n",
                    "```\n" + sub.format_usage().strip().replace("usage: ", "") + "\n```\n"])
        rows = _option_rows(sub)
        if rows:
            out.extend(["| option | meaning |", "|---|---|", *rows, ""])
        for name, child, child_help in _subparsers(sub):
            section(f"{prefix} {name}", child, child_help)

    for name, sub, help_text in _subparsers(parser):
        section(name, sub, help_text)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover
    import os

    os.environ["COLUMNS"] = "100"
    print(render(), end="")
