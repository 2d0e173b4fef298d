"""``xraybench explain``: where a recorded run's saved model looks, as overlay PNGs, and the shortcut
check over its test images kept in its record (``xraybench/explain``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from xraybench.cli import options
from xraybench.cli.common import SAVED_RUN, command, count_arg
from xraybench.errors import XRayBenchError
from xraybench.records import EXPLAIN_METHODS, EXPLAIN_SAMPLE_SEED


def cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np

    from xraybench import saved_model
    from xraybench.escaping import terminal_text
    from xraybench.explain import jobs, overlay, shortcut
    from xraybench.results import ResultStore

    start = time.perf_counter()
    store = ResultStore(args.results)
    record = store.find(args.run_id)  # unknown or ambiguous run: one line
    saved_model.verified_path(store, record)  # no model, a missing or changed file: one line, before any image is read
    out = Path(args.out) if args.out else store.root / "explanations" / record.run_id
    sample_seed: int | None = None
    if args.paths:
        if args.data:
            raise XRayBenchError("--data names the data set of the run's test images; with PATHs it has no use")
        ids, images = saved_model.read_images([Path(p) for p in args.paths], record)  # an unreadable image: one line
        if not ids:
            raise XRayBenchError("no image to explain: the paths hold no JPEG or PNG files")
        ids, images = ids[:args.limit], images[:args.limit]
        what = f"{len(ids)} image(s)"
    else:
        from xraybench.plugins import load_registry

        split = saved_model.read_test_split(record, args.data, registry=load_registry())
        index = jobs.sample(len(split.ids), args.limit)
        sample_seed = None if len(index) == len(split.ids) else jobs.SAMPLE_SEED
        ids, images = [split.ids[i] for i in index], split.images[index]
        what = (f"all {len(ids)} test images" if sample_seed is None
                else f"{len(ids)} of the {len(split.ids)} test images (a fixed sample, seed {sample_seed})")
        if not args.no_record:
            jobs.rewritable_path(store, record.run_id)  # a read-only or foreign record: one line, before the slow part
    overlay.prepare_folder(out, [overlay.file_name(i) for i in ids], create=False)  # bad --out: one line, before it too

    with jobs.MapMaker(store) as maker:
        result = maker.maps(record, np.asarray(images), args.method)
    paths = overlay.render_overlays(ids, images, result.maps, out)
    seconds = time.perf_counter() - start
    print(f"wrote {len(paths)} {result.method} overlays of {what} for run {terminal_text(record.run_id)} to "
          f"{terminal_text(out)} in {seconds:.1f}s")
    try:
        shares = shortcut.shortcut_check(result.maps, result.method)
    except XRayBenchError as exc:  # no map has positive saliency: nothing to locate, nothing to record
        print(f"shortcut check: {exc}")
        return 0
    print(f"shortcut check ({result.method}, {shares.n_images} maps): {jobs.describe(shares)}")
    if not args.paths and not args.no_record:
        path = jobs.record_shortcut(store, record.run_id, jobs.shortcut_entry(shares, len(split.ids), sample_seed))
        print(f"recorded in {terminal_text(path)} (shortcut_check.{result.method})")
    return 0


def add_explain(sub) -> None:
    p = command(sub, "explain", cmd_explain,
                "overlay PNGs of where a recorded run's saved model looks, and its shortcut check",
                "Saliency maps of a done run's saved model (its SHA-256 checked against the record "
                "first; the model runs in a child process), drawn over each image as a PNG. Without "
                "PATHs, the run's test images, read from the data set its record names (refused "
                "unless the data's fingerprint is the record's); then the shortcut check, the share "
                "of the saliency on the image border and corners (where pediatric X-rays carry text "
                "markers and hospital borders) against the lung field, is printed and stored in the "
                "run's record (`shortcut_check`, one entry per method). Cost: occlusion makes about "
                "226 predictions per image (all 624 Kermany test images at 32 px: 9 s for "
                "a logistic regression, 41 s for the seed's CNN on 2 busy cores), Grad-CAM one forward and "
                "one backward pass; --limit N takes a fixed sample.")
    p.add_argument("run_id", metavar="RUN_ID", help=SAVED_RUN)
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="image files, or folders searched for .jpeg/.jpg/.png/.bmp/.tif files, decoded as the run's "
                        "training images were (default: the run's test images)")
    p.add_argument("--method", choices=EXPLAIN_METHODS, default="occlusion",
                   help="occlusion: every model alike, so maps and shortcut figures compare across models (forward "
                        "passes only); gradcam: Keras CNNs on TensorFlow or JAX, faster, at the resolution of the "
                        "last convolution (4x4 for the seed's CNN at 32 px, too coarse to see a border band); auto: "
                        "Grad-CAM where it runs, else occlusion")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the PNGs, new or one xraybench explain wrote (default: RESULTS/explanations/RUN_ID)")
    p.add_argument("--limit", type=count_arg(1, "of images "), metavar="N",
                   help="explain at most N images: the first N PATHs, or a fixed sample of N test images (seed "
                        f"{EXPLAIN_SAMPLE_SEED}); the record keeps the sample's size and seed (default: all)")
    p.add_argument("--data", metavar="PATH",
                   help="the data set of the run's test images, when it is no longer where the record says (default: "
                        "the record's data source, or this install's built-in 28 px copy for a run on it; its "
                        "fingerprint must be the record's)")
    p.add_argument("--no-record", action="store_true",
                   help="write the overlays and print the shortcut check, but leave the run's record as it is")
    options.results(p)
