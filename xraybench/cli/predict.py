"""``xraybench predict``: a recorded run's saved model applied to new images (``saved_model.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xraybench.cli import options
from xraybench.cli.common import SAVED_RUN, command
from xraybench.errors import XRayBenchError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def cmd_predict(args: argparse.Namespace) -> int:
    from xraybench import saved_model
    from xraybench.records import LABELS
    from xraybench.results import ResultStore

    store = ResultStore(args.results)
    record = store.find(args.run_id)
    saved_model.verified_path(store, record)  # no model, a missing or changed file: one line, before any image is read
    if not record.val_threshold or not isinstance(record.val_threshold.get("value"), (int, float)):
        raise XRayBenchError(f"run {record.run_id} records no validation-chosen threshold; it cannot label images")
    threshold = float(record.val_threshold["value"])
    skipped: list[tuple[str, str]] | None = [] if args.skip_bad else None
    ids, images = saved_model.read_images([Path(p) for p in args.paths], record, skipped=skipped)
    if skipped:
        listed = "; ".join(f"{p} ({why})" for p, why in skipped[:3])
        listed += f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        print(f"warning: skipped {len(skipped)} unreadable image(s): {listed}", file=sys.stderr)
    if not ids:
        raise XRayBenchError("no image to predict: the paths hold no JPEG or PNG files"
                             + (" that could be read" if skipped else ""))
    scores = _scores(store.root, record.run_id, images)
    rows = [{"image": i, "score": float(s), "label": LABELS[int(s >= threshold)]} for i, s in zip(ids, scores)]
    _show(args.format, record, threshold, rows)
    return 0


def _scores(root: Path, run_id: str, images: np.ndarray) -> np.ndarray:
    """The model's scores, computed in a child process (``isolation.py``), as every prediction is:
    the plugin's code and the backend stay out of this process, and Ctrl-C stops it."""
    from xraybench.isolation import run_once

    outcome = run_once(_score_in_child, (str(root), run_id, images), None, expected=(XRayBenchError,))
    if not outcome.ok:
        raise XRayBenchError(f"predicting with run {run_id} failed: {outcome.reason}")
    return outcome.value


def _score_in_child(root: str, run_id: str, images: np.ndarray) -> np.ndarray:
    from xraybench import saved_model
    from xraybench.results import ResultStore

    store = ResultStore(root)
    record = store.find(run_id)
    return saved_model.load_model(store, record).scores(images)


def _show(fmt: str, record: Any, threshold: float, rows: list[dict[str, Any]]) -> None:
    if fmt == "json":
        import json

        json.dump({"run_id": record.run_id, "model": record.model, "threshold": threshold,
                   "threshold_method": record.threshold_method(), "predictions": rows}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    if fmt == "csv":
        import csv

        from xraybench.escaping import csv_cell

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["image", "score", "label"])
        for row in rows:
            writer.writerow([csv_cell(row["image"]), repr(row["score"]), row["label"]])
        return
    from rich.table import Table

    from xraybench.richtext import console as make_console, plain

    table = Table(title=plain(f"run {record.run_id} ({record.model}, {record.image_size} px)"), title_justify="left",
                  header_style="bold")
    table.add_column("Image")
    table.add_column("P(PNEUMONIA)", justify="right")
    table.add_column("Label")
    for row in rows:
        table.add_row(plain(row["image"]), f"{row['score']:.6f}", row["label"])
    console = make_console()
    console.print(table)
    console.print(plain(f"label: PNEUMONIA where the score is at least {threshold:.6f}, the run's threshold chosen by "
                        f"{record.threshold_method()}"))


def add_predict(sub) -> None:
    p = command(sub, "predict", cmd_predict, "score new images with a recorded run's saved model",
                "Score JPEG or PNG images (files, or folders searched for them) with the model a done run "
                "saved beside its record, preprocessed as the run's training images (size, channels and "
                "scaling from the record), and label each at the run's validation-chosen threshold. The "
                "model file's SHA-256 is checked against the record before it is loaded. DICOM is not "
                "read: export to PNG with your viewer's windowing.")
    p.add_argument("run_id", metavar="RUN_ID",
                   help=SAVED_RUN + "; the file's SHA-256 and size are checked against the record before it is loaded")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, or folders searched for .jpeg/.jpg/.png/.bmp/.tif files; each is decoded and "
                        "resized as the run's training images were (the record's image size and channels). DICOM is "
                        "not read: export it to PNG with your viewer's windowing")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="each image's path, P(PNEUMONIA) and label at the run's validation-chosen threshold")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out images that cannot be read (one warning line names them) instead of failing")
    options.results(p)
