"""``xraybench data``: summarise a data set, clear the decode cache, download a public set."""

from __future__ import annotations

import argparse

from xraybench.cli import options
from xraybench.cli.common import announce_builtin, command, console
from xraybench.errors import XRayBenchError
from xraybench.records import DEFAULT_IMAGE_SIZE


def cmd_data(args: argparse.Namespace) -> int:
    if getattr(args, "data_command", None) == "download":
        from xraybench.data.download import download_pneumoniamnist

        if args.dataset != "pneumoniamnist":
            raise XRayBenchError(f"unknown data set {args.dataset!r}; downloadable: pneumoniamnist")
        from pathlib import Path

        path = download_pneumoniamnist(args.size, Path(args.dest) if args.dest else None)
        print(f"saved {path}; use it with --data {path}")
        return 0
    from xraybench.data import cache

    if args.clear_cache:
        print(_cleared_text(cache.clear(force=args.force)))
        return 0
    from xraybench.data import load_dataset
    from xraybench.data.builtin import native_size
    from xraybench.terminal_report import print_data_summary

    announce_builtin(args.data)
    size = args.image_size or native_size(args.data) or DEFAULT_IMAGE_SIZE
    dataset = load_dataset(args.data, image_size=size, channels=args.channels, seed=args.seed,
                           val_fraction=args.val_fraction, skip_bad=args.skip_bad, rescan=args.rescan)
    print_data_summary(dataset, console())
    return 0


def _cleared_text(done) -> str:
    """What --clear-cache removed, and what it left and why, in a few lines."""
    def names(items: list) -> str:
        return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    n = len(done.removed)
    lines = [f"removed {n} cache entr{'y' if n == 1 else 'ies'} from {done.root}"]
    if done.partly:
        lines.append(f"kept {len(done.partly)} entr{'y' if len(done.partly) == 1 else 'ies'} holding files xraybench "
                     f"did not write (its own files are gone): {names(done.partly)}")
    if done.old_entries:
        lines.append(f"left {len(done.old_entries)} entr{'y' if len(done.old_entries) == 1 else 'ies'} from an older "
                     f"xraybench without the ownership marker: {names(done.old_entries)}; pass --force to remove them")
    if done.foreign:
        lines.append(f"left {len(done.foreign)} item(s) xraybench did not make: {names(done.foreign)}")
    return "\n".join(lines)


def add_data(sub) -> None:
    p = command(sub, "data", cmd_data, "summarise the data set (counts, patients, duplicates, cache, fingerprint)")
    options.data(p, DEFAULT_IMAGE_SIZE)
    options.seed(p, "seed of the validation split")
    p.add_argument("--clear-cache", action="store_true",
                   help="remove the decoded-image cache entries xraybench made; "
                        "anything else in the cache folder is left and named")
    options.force(p, "with --clear-cache, also remove entries an older xraybench made before entries carried an ownership marker")
    p.add_argument("--rescan", action="store_true",
                   help="stat every source image and checksum every cached byte (sees images rewritten in place)")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    d = command(data_sub, "download", cmd_data, "download a public data set")
    d.add_argument("dataset", choices=("pneumoniamnist",))
    d.add_argument("--size", type=int, default=28, choices=(28, 64, 128, 224))
    d.add_argument("--dest", metavar="DIR", help="folder to save into (default: the user data folder)")
