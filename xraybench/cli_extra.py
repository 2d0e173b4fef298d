"""Commands added by later work (tuning, checks, reports); kept apart so cli.py stays small."""

from __future__ import annotations


def add_commands(sub, formatter) -> None:  # filled in as commands land
    return None
