"""The harness against a plain Keras script, in many short alternating rounds (issue 16, item 2).

    python benchmarks/bench_paired.py                       # baseline_cnn, 150 px, 256 images, 24 rounds
    python benchmarks/bench_paired.py --size 64 --rounds 40

A shared VM changes speed by up to 2x within minutes, so two runs minutes apart do not
give a ratio to 5%. Here both trainings run in ONE process, each in its own thread, and a
baton lets exactly one of them train at a time: the harness (``xraybench.harness.fit``:
its tf.data input over the cached array, augmentation, metrics, early stopping, progress
callback) trains K batches, hands over, the plain script (``model.fit`` on a
``from_tensor_slices`` pipeline of the same arrays, same model and augmentation, same
validation and early stopping) trains K batches, hands back, and so on. Each pair of
consecutive segments is one round, seconds apart, so a speed swing of the machine hits
both sides of a pair alike; the figure is the median of the per-round ratios
(harness images/s / plain images/s) with its quartiles and range. Segments that hold an
epoch's last batch also hold that epoch's validation pass, on both sides alike. The first
epoch (graph tracing) is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import head, model_params, plain_model, plain_tfdata  # noqa: E402

HARNESS, PLAIN = 0, 1


class Baton:
    """Strict alternation between two trainers; a finished (or failed) side never blocks the other."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.turn = HARNESS
        self.done: set[int] = set()

    def acquire(self, me: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == me or (1 - me) in self.done)

    def release(self, me: int) -> None:
        with self.cond:
            self.turn = 1 - me
            self.cond.notify_all()

    def finish(self, me: int) -> None:
        with self.cond:
            self.done.add(me)
            self.turn = 1 - me
            self.cond.notify_all()


def segment_callback(baton: Baton, me: int, steps_per_epoch: int, every: int, batch_size: int, out: list):
    """A Keras callback that trains ``every`` batches per turn and records (epoch, images, seconds) per turn."""
    import keras

    class Segments(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            baton.acquire(me)
            self.t0, self.images, self.epoch = time.perf_counter(), 0, 0

        def _hand_over(self, logs=None):
            # Wait for this side's last step to finish computing before the clock stops: Keras may
            # run steps asynchronously, and an unfinished step would be billed to the other side.
            if logs and "loss" in logs:
                float(logs["loss"])
            out.append((self.epoch, self.images, time.perf_counter() - self.t0))
            baton.release(me)
            baton.acquire(me)
            self.t0, self.images = time.perf_counter(), 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            self.images += batch_size
            if (batch + 1) % every == 0 and batch + 1 < steps_per_epoch:
                self._hand_over(logs)

        def on_epoch_end(self, epoch, logs=None):
            self._hand_over(logs)  # after validation: the same work on both sides

        def on_train_end(self, logs=None):
            baton.finish(me)

    return Segments()


def paired_rounds(train, val, size: int, rounds: int = 24, every: int = 2, batch_size: int = 32) -> dict:
    """Run the alternation; returns per-round rates and the ratio summary."""
    import keras

    from xraybench import harness

    n = len(train)
    steps = -(-n // batch_size)
    per_epoch = len([b for b in range(1, steps) if b % every == 0]) + 1
    epochs = 1 + -(-rounds // per_epoch)
    baton = Baton()
    segs: dict[int, list] = {HARNESS: [], PLAIN: []}
    errors: list[BaseException] = []

    spec, params = model_params(epochs=epochs, patience=epochs + 1, batch_size=batch_size)

    def run_harness():
        try:
            cb = segment_callback(baton, HARNESS, steps, every, batch_size, segs[HARNESS])
            harness.fit(spec, train, val, params, seed=0, precision="float32", callbacks=[cb])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            baton.finish(HARNESS)

    keras.utils.set_random_seed(0)
    model = plain_model(keras, size)
    ds, vds = plain_tfdata(train, batch_size), plain_tfdata(val, batch_size, shuffle_seed=None)

    def run_plain():
        try:
            cb = segment_callback(baton, PLAIN, steps, every, batch_size, segs[PLAIN])
            stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=epochs + 1, restore_best_weights=True)
            model.fit(ds, validation_data=vds, epochs=epochs, callbacks=[stop, cb], verbose=0, shuffle=False)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            baton.finish(PLAIN)

    threads = [threading.Thread(target=run_harness, daemon=True), threading.Thread(target=run_plain, daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    pairs = [(h, p) for h, p in zip(segs[HARNESS], segs[PLAIN]) if h[0] > 0]  # epoch 0: tracing
    if not pairs:
        raise RuntimeError("no rounds after the first epoch: raise --rounds")
    h_rate = [h[1] / h[2] for h, _ in pairs]
    p_rate = [p[1] / p[2] for _, p in pairs]
    ratios = sorted(a / b for a, b in zip(h_rate, p_rate))
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "rounds": len(ratios), "images_per_segment": every * batch_size, "size": size, "train_images": n,
        "ratio_median": statistics.median(ratios), "ratio_q1": q[0], "ratio_q3": q[2],
        "ratio_min": ratios[0], "ratio_max": ratios[-1],
        "harness_img_s_median": statistics.median(h_rate), "plain_img_s_median": statistics.median(p_rate),
        "harness_img_s": [round(r, 1) for r in h_rate], "plain_img_s": [round(r, 1) for r in p_rate],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=24)
    ap.add_argument("--every", type=int, default=2, help="batches per turn")
    ap.add_argument("--data", default=None, help="default: $XRAYBENCH_DATA")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from xraybench.data import load_dataset

    d = load_dataset(args.data, image_size=args.size)
    train, val = head(d.splits.train, args.images), head(d.splits.val, 64)
    load = os.getloadavg()[0]
    r = paired_rounds(train, val, args.size, args.rounds, args.every)
    print(json.dumps(r))
    print(f"\nbaseline_cnn {args.size} px, {r['train_images']} training images, {r['rounds']} rounds of "
          f"{r['images_per_segment']} images per side; load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"harness / plain Keras: median {r['ratio_median']:.3f}, quartiles {r['ratio_q1']:.3f}-{r['ratio_q3']:.3f}, "
          f"range {r['ratio_min']:.3f}-{r['ratio_max']:.3f} (target >= 0.95); medians {r['harness_img_s_median']:.1f} "
          f"vs {r['plain_img_s_median']:.1f} images/s")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    sys.exit(main())
