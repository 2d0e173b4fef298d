"""``xraybench export``: a recorded run's saved model as an ONNX file or an MLflow run (``xraybench/export/``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from xraybench.cli import options
from xraybench.cli.common import SAVED_RUN, command
from xraybench.export import FORMATS, MLFLOW_EXPERIMENT, TOLERANCE


def cmd_export(args: argparse.Namespace) -> int:
    from xraybench import export
    from xraybench.results import ResultStore
    from xraybench.richtext import console as make_console, plain

    store = ResultStore(args.results)
    record = store.find(args.run_id)
    console = make_console()
    if args.to == "onnx":
        done = export.to_onnx(store, record, Path(args.out) if args.out else None, args.data)
        verb = "replaced" if done.replaced else "wrote"
        console.print(plain(f"{verb} {done.path} ({done.bytes:,} bytes; {done.converter})"))
        console.print(plain(f"input {export.ONNX_INPUT}: uint8 (N, {record.image_size}, {record.image_size}, "
                            f"{record.channels}), raw pixels 0-255; output {export.ONNX_OUTPUT}: float32 (N,), P(PNEUMONIA)"))
        console.print(plain(f"checked with onnxruntime on the run's {done.images} test images: largest difference from "
                            f"the stored scores {done.max_diff:.2g} (at most {export.TOLERANCE:g} is kept)"))
        return 0
    if args.out or args.data:
        from xraybench.errors import XRayBenchError

        raise XRayBenchError("--out and --data are for --to onnx; MLflow takes --tracking-uri and --experiment")
    logged = export.to_mlflow(store, record, args.tracking_uri, args.experiment)
    if logged.already:
        console.print(plain(f"run {record.run_id} is already in MLflow experiment {logged.experiment!r} at {logged.uri} "
                            f"as run {logged.mlflow_run_id}; nothing logged"))
        return 0
    console.print(plain(f"logged run {record.run_id} to MLflow at {logged.uri}: experiment {logged.experiment!r} "
                        f"({logged.experiment_id}), run {logged.mlflow_run_id}"))
    console.print(plain(f"{logged.params} parameters, {logged.metrics} metric values, artifacts: "
                        f"{', '.join(logged.artifacts)}"))
    return 0


def add_export(sub) -> None:
    p = command(sub, "export", cmd_export, "a recorded run's saved model as an ONNX file or an MLflow run",
                "Take a done run's saved model out of xraybench. --to onnx writes one ONNX graph from "
                "raw pixels to P(PNEUMONIA), the run's preprocessing inside (input `images`: uint8 "
                "(N, H, W, C) at the run's image size and channels; output `pneumonia_score`: float32 "
                "(N,)), and keeps it only if onnxruntime reproduces the run's stored test scores "
                f"within {TOLERANCE:g} on its test images (needs `pip install \"xraybench[onnx]\"`). "
                "--to mlflow logs the run's parameters, metrics, tags, record, scores and model file "
                "as one MLflow run (needs `pip install \"xraybench[mlflow]\"`). The model file's "
                "SHA-256 is checked against the record first.")
    p.add_argument("run_id", metavar="RUN_ID", help=SAVED_RUN)
    p.add_argument("--to", choices=FORMATS, required=True, help="what to export to")
    p.add_argument("--out", metavar="PATH",
                   help="ONNX: the file to write (default: RESULTS/exports/RUN_ID.onnx); an existing file is replaced "
                        "only if xraybench exported it")
    p.add_argument("--data", metavar="PATH",
                   help="ONNX: where the run's images are, for the check against its stored test scores (default: the "
                        "record's data source, or this install's built-in 28 px copy for a run on it; its fingerprint "
                        "must be the record's)")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow: a tracking server URL, sqlite:///PATH or file:PATH (default: a SQLite store in "
                        "RESULTS/mlflow/); shown with its secrets masked")
    p.add_argument("--experiment", default=MLFLOW_EXPERIMENT, metavar="NAME",
                   help="MLflow: the experiment, created if missing")
    options.results(p)
