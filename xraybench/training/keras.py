"""The trainer of ``KerasModel``: the one training loop every Keras plugin gets.

Batches come from the cached uint8 arrays (``batches.py``). Augmentation runs in front of the
plugin's network; the run's recipe (``recipes.py``) sets the optimizer, schedule, loss,
augmentation policy and the validation metric that picks the epoch. The core imports keras only
here and in ``batches.py`` (plugins in their own ``build``); the rest of xraybench reaches it
through ``TRAINER`` (``xraybench.training.Trainer``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from xraybench import checkpoints
from xraybench.errors import PluginFailure, XRayBenchError
from xraybench.progress import EpochBar, StopState, live, quiet_backend_startup
from xraybench.records import PRECISIONS
from xraybench.specs import ImageSet, KerasModel
from xraybench.training import Fitted, NotSavable, OnEpoch, Restored, StoredModel, one_line, recipes
from xraybench.training.batches import TTA_SHIFTS, batch_arrays, make_dataset, shifted
from xraybench.training.backend import ensure_keras_backend, import_quietly, unusable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ensure_keras_backend()  # before the first ``import keras`` of this process (training/backend.py)


def resolve_precision(requested: str = "auto") -> str:
    """``auto`` is float32 on every CPU and mixed_bfloat16 on a GPU (TensorFlow, JAX or PyTorch backend).

    Not the CPU's bf16 flags: on the AVX512-BF16 machines this project runs on, TensorFlow's
    bf16 training measured 6.9x slower than float32 (leaderboards/precision), and a default
    that changed with the CPU would make the same command give different rows on different
    machines. bf16 on a CPU stays one flag away (``--precision mixed_bfloat16``).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    # The backend Keras runs on, where something imported Keras before xraybench pinned one.
    backend = sys.modules["keras"].backend.backend() if "keras" in sys.modules else ensure_keras_backend()
    return "mixed_bfloat16" if _has_gpu(backend or "") else "float32"


def _has_gpu(backend: str) -> bool:
    """Whether the Keras backend about to be used sees a GPU (each backend probes its own way)."""
    with quiet_backend_startup():  # importing a backend and probing for CUDA write to fd 2
        if backend == "jax":
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available())
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
    return False


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights inverse to class frequency, normalised so that the mean weight per image is 1."""
    labels = np.asarray(labels).astype(int)
    n = len(labels)
    counts = np.bincount(labels, minlength=2)
    return {c: float(n / (2.0 * counts[c])) if counts[c] else 1.0 for c in (0, 1)}


def augmentation(keras, policy: str = "seed"):
    """The layers of an augmentation policy (recipes.py): ``none``; ``seed``, the seed's light
    augmentation (small rotations, shifts and zooms, no flips); ``strong``, the seed's plus a
    contrast and brightness change per image (augment.random_intensity_layer).

    The seed's under TensorFlow: Keras' three layers (the draws behind every published CPU row).
    JAX and PyTorch: the same ranges as one fused warp (training/augment.py says why).
    """
    from xraybench.training import augment

    if policy == "none":
        return []
    extra = [augment.random_intensity_layer(keras)] if policy == "strong" else []
    if keras.backend.backend() != "tensorflow":
        return [*extra, augment.random_affine_layer(keras)]
    return [*extra,
        keras.layers.RandomRotation(augment.ROTATION, fill_mode="nearest", name="aug_rotate"),
        keras.layers.RandomTranslation(augment.SHIFT, augment.SHIFT, fill_mode="nearest", name="aug_shift"),
        keras.layers.RandomZoom(augment.ZOOM, fill_mode="nearest", name="aug_zoom"),
    ]


def standardization(keras):
    """Per-image standardisation (zero mean, unit variance per image), as a layer.

    Takes each image's exposure and contrast out of what the network sees: the Kaggle test
    split's NORMAL images are brighter in their darkest pixels than train's (see
    docs/examples/intensity_by_split.py), a cue a network can learn as "PNEUMONIA".
    """
    return _own_layers(keras)["PerImageStandardization"](name="standardize")


_OWN_LAYERS: dict[str, Any] = {}


def _own_layers(keras) -> dict[str, Any]:
    """The layer classes of xraybench's own that a saved model may hold, made once per process (where
    keras is imported), so that a saved model names the very class ``load_model`` passes back."""
    if not _OWN_LAYERS:
        ops = keras.ops

        class PerImageStandardization(keras.layers.Layer):  # a base made at run time
            def call(self, x):
                mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
                std = ops.std(x, axis=(1, 2, 3), keepdims=True)
                return (x - mean) / ops.maximum(std, 1.0 / 255.0)

        _OWN_LAYERS["PerImageStandardization"] = PerImageStandardization
    return _OWN_LAYERS


class FittedKeras:
    """A trained Keras model and how its scores are made: batches scaled to [0, 1] (or equalised),
    optionally averaged over shifts. ``inference`` is the network without its augmentation layers
    (identity at prediction), the model that is saved (``save_model``)."""

    def __init__(self, model, core, batch_size: int, tta: bool = False, equalize: bool = False, inference=None) -> None:
        self.model, self.core, self.batch_size, self.tta, self.equalize = model, core, batch_size, tta, equalize
        self.inference = inference

    @classmethod
    def for_run(cls, model, params: dict[str, Any], core=None, inference=None) -> FittedKeras:
        """``model`` scoring as a run with ``params`` does (batch size, equalisation, shift averaging)."""
        return cls(model, core, int(params.get("batch_size", 32)), tta=bool(params.get("tta", False)),
                   equalize=bool(params.get("equalize", False)), inference=inference)

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """The network's own inputs for uint8 ``images``: the float32 batch ``_predict`` feeds it
        (scaled to [0, 1], or equalised), before any shift of ``tta``."""
        images = np.asarray(images)
        return batch_arrays(images, None, np.arange(len(images)), 0, equalize=self.equalize)

    def _predict(self, images: np.ndarray) -> np.ndarray:
        ds = make_dataset(images, None, self.batch_size, shuffle=False, seed=0, equalize=self.equalize)
        return np.asarray(self.model.predict(ds, verbose=0), dtype=np.float64)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """P(PNEUMONIA); with ``tta``, the mean over the image and four small shifts of it."""
        if not self.tta:
            return self._predict(images)
        step = max(1, int(images.shape[1]) // 16)
        return np.mean([self._predict(shifted(np.asarray(images), dy * step, dx * step)) for dy, dx in TTA_SHIFTS], axis=0)


def learning_rate(keras, params: dict[str, Any], steps_per_epoch: int):
    """The recipe's learning rate: a number, or a schedule over optimizer steps (warm-up, then
    constant, cosine decay to 0, or MedMNIST's x0.1 steps at half and three quarters of training)."""
    rate = float(params.get("learning_rate", 1e-3))
    schedule = str(params.get("schedule", "constant"))
    warm = int(params.get("warmup_epochs", 0)) * steps_per_epoch
    total = max(1, int(params.get("epochs", 20)) * steps_per_epoch)
    if schedule == "constant" and warm == 0:
        return rate
    ops = keras.ops

    class RecipeSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = ops.cast(step, "float32")
            if schedule == "cosine":
                progress = ops.clip((step - warm) / float(max(total - warm, 1)), 0.0, 1.0)
                after = rate * 0.5 * (1.0 + ops.cos(math.pi * progress))
            elif schedule == "step":
                after = rate * ops.where(step < 0.5 * total, 1.0, ops.where(step < 0.75 * total, 0.1, 0.01))
            else:
                after = rate + 0.0 * step
            return ops.where(step < warm, rate * (step + 1.0) / float(max(warm, 1)), after) if warm else after

        def get_config(self):
            return {"rate": rate, "schedule": schedule, "warmup_steps": warm, "total_steps": total}

    return RecipeSchedule()


def optimizer(keras, params: dict[str, Any], steps_per_epoch: int):
    """Adam or AdamW (decoupled weight decay) at the recipe's learning rate."""
    rate = learning_rate(keras, params, steps_per_epoch)
    decay = float(params.get("weight_decay", 0.0)) or None
    if params.get("optimizer", "adam") == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=decay or 0.0)
    return keras.optimizers.Adam(learning_rate=rate, weight_decay=decay)


def _assign(variables, values) -> None:
    for variable, value in zip(variables, values):
        variable.assign(value)


def weight_averager(keras, momentum: float, initial: list[np.ndarray] | None = None):
    """Epoch-end exponential moving average of the float weights (recipes.py: weight_average).

    First in the callback list: as validation starts (``on_test_begin``, inside ``fit``) it folds
    the epoch's weights into the average and puts the average in place, so the validation
    metrics, the epoch choice (EarlyStopping's snapshot at ``on_epoch_end``) and the final model
    are the average's; the raw weights go back before the next epoch trains. A checkpoint saves
    the raw weights and the average (``raw_in_place``, ``average``) and a resume starts from
    both (``initial``), so a resumed run averages as the uninterrupted one would.
    """
    import contextlib

    class WeightAverage(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.average: list[np.ndarray] | None = None if initial is None else [np.array(a) for a in initial]
            self.raw: list[np.ndarray] | None = None

        @contextlib.contextmanager
        def raw_in_place(self):
            """The raw (trained) weights in the model for the block, the average back after it."""
            if self.raw is None or self.average is None:
                yield
                return
            _assign(self._weights(), self.raw)
            try:
                yield
            finally:
                _assign(self._weights(), self.average)

        def _weights(self):
            return [v for v in self.model.weights if "float" in str(v.dtype)]

        def on_test_begin(self, logs=None):
            if self.raw is not None:  # already averaged this epoch
                return
            raw = self.raw = [np.array(v.numpy()) for v in self._weights()]
            old = self.average
            self.average = [w.copy() for w in raw] if old is None else [
                momentum * a + (1.0 - momentum) * w for a, w in zip(old, raw)]
            _assign(self._weights(), self.average)

        def on_epoch_begin(self, epoch, logs=None):
            if self.raw is not None:
                _assign(self._weights(), self.raw)
                self.raw = None

    return WeightAverage()


def _start_keras(seed: int):
    """Keras, imported with the backend's start-up noise held back, its random streams seeded."""
    import_quietly()
    with quiet_backend_startup():
        import keras

        # Seeds TensorFlow too wherever it is installed, importing it under JAX and PyTorch as well
        # (its start-up lines would then reach the screen): inside the quiet block.
        keras.utils.set_random_seed(seed)
    return keras


def _build(keras, spec: KerasModel, shape: tuple[int, int, int], params: dict[str, Any]):
    """The plugin's own network, checked to be a ``keras.Model``."""
    if spec.build is None:
        raise TypeError(f"{spec.name} declares no build function")
    core = spec.build(shape, dict(params))
    if not isinstance(core, keras.Model):
        raise TypeError(f"build returned {type(core).__name__}, expected a keras.Model")
    return core


def _networks(keras, spec: KerasModel, shape: tuple[int, int, int], params: dict[str, Any]):
    """(trained model, plugin's network, inference model): the network behind the recipe's
    augmentation and optional standardisation, and the same layers (weights shared) without the
    augmentation, which is identity at prediction: what is saved."""
    core = _build(keras, spec, shape, params)
    standardize = standardization(keras) if params.get("standardize", False) else None
    inputs = x = keras.Input(shape=shape, name="image")
    for layer in augmentation(keras, recipes.augment_policy(params.get("augment", "seed"))):
        x = layer(x)
    model = keras.Model(inputs, core(standardize(x) if standardize else x), name=f"xraybench_{spec.name}")
    plain = keras.Input(shape=shape, name="image")
    inference = keras.Model(plain, core(standardize(plain) if standardize else plain), name=f"xraybench_{spec.name}")
    return model, core, inference


def _progress(keras, bar: EpochBar | None, stopper, on_epoch: OnEpoch | None, epochs: int, initial_epoch: int):
    """The callback that drives the live bar and ``on_epoch``; after EarlyStopping in the list, so
    its state for this epoch is already updated."""

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.began = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            if bar is not None:
                bar.start(epoch + 1)

        def on_epoch_end(self, epoch, logs=None):
            if bar is not None:
                bar.stop()
            if on_epoch is not None:
                state = StopState(
                    patience=stopper.patience, wait=stopper.wait, best_epoch=stopper.best_epoch + 1,
                    stopping=bool(getattr(self.model, "stop_training", False)),
                    epoch_seconds=(time.perf_counter() - self.began) / (epoch + 1 - initial_epoch),
                )
                on_epoch(epoch + 1, epochs, {**{k: float(v) for k, v in (logs or {}).items()}, **state.as_logs()})

        def on_train_end(self, logs=None):
            if bar is not None:
                bar.stop()

    class LiveProgress(Progress):
        """The in-epoch bar. Only on a terminal: Keras reads every batch's loss back from the
        device for a batch hook, a sync per step that costs accelerators much of their speed;
        ``async_safe`` lets Keras call it from its callback thread instead of the step loop."""

        async_safe = True

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if bar is not None:  # (always: LiveProgress is used only with a bar)
                bar.advance(batch + 1, None if loss is None else float(loss))

    return LiveProgress() if bar is not None else Progress()


def fit_keras(spec: KerasModel, train: ImageSet, val: ImageSet, params: dict[str, Any], seed: int, precision: str,
              on_epoch: OnEpoch | None = None, callbacks: list | None = None) -> tuple[FittedKeras, dict[str, Any]]:
    """Train ``spec`` on ``train``, early-stopping on ``val``; returns the fitted model and what happened.

    ``on_epoch(epoch, epochs, logs)`` gets Keras' epoch logs plus the early-stopping state
    (``StopState.as_logs``); on a terminal a live bar runs inside each epoch (see progress.py).
    """
    keras = _start_keras(seed)
    keras.mixed_precision.set_global_policy(precision)
    bar: EpochBar | None = None
    try:
        shape = cast(tuple[int, int, int], tuple(int(d) for d in train.images.shape[1:]))  # images are (N, H, W, C)
        model, core, inference = _networks(keras, spec, shape, params)
        epochs, batch_size = int(params.get("epochs", 20)), int(params.get("batch_size", 32))
        steps = max(1, -(-len(train) // batch_size))
        model.compile(
            optimizer=optimizer(keras, params, steps),
            loss=keras.losses.BinaryCrossentropy(label_smoothing=float(params.get("label_smoothing", 0.0))),
            metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        )
        bar = EpochBar(spec.name, epochs, steps, batch_size) if live() else None
        history, saved, seconds = _train(keras, model, train, val, params, seed, (epochs, batch_size), bar, on_epoch,
                                         callbacks or [])
        logs = {k: [float(v) for v in values] for k, values in history.history.items()}
        if saved:  # the epochs before the resume first
            logs = {k: [*saved["history"].get(k, []), *v] for k, v in logs.items()}
        epochs_run = len(logs.get("loss", []))
        info = {"history": logs, "epochs_run": epochs_run, "train_seconds": seconds,
                "param_count": int(core.count_params()),
                "train_images_per_second": len(train) * epochs_run / seconds if seconds else None}
        return FittedKeras.for_run(model, params, core=core, inference=inference), info
    finally:
        if bar is not None:
            bar.stop()
        keras.mixed_precision.set_global_policy("float32")


def _train(keras, model, train: ImageSet, val: ImageSet, params: dict[str, Any], seed: int, sizes: tuple[int, int],
           bar: EpochBar | None, on_epoch: OnEpoch | None, callbacks: list):
    """``model.fit`` with the run's callbacks, from a checkpoint where there is one; returns
    (Keras' history, the checkpoint resumed from or None, seconds). ``sizes``: (epochs, batch size)."""
    epochs, batch_size = sizes
    select, patience = str(params.get("select", "val_loss")), int(params.get("patience", 3))
    stopper = keras.callbacks.EarlyStopping(  # patience 0: every epoch trains, the best is kept
        monitor=select, mode="min" if select == "val_loss" else "max",
        patience=patience if patience > 0 else epochs + 1, restore_best_weights=True)
    save_to, resume_from = checkpoints.current()
    saved = checkpoints.load(resume_from) if resume_from is not None else None
    initial_epoch = _restore(model, saved) if saved else 0
    momentum = float(params.get("weight_average", 0.0))
    averager = weight_averager(keras, momentum, (saved or {}).get("average")) if momentum > 0 else None
    keeper = _checkpointer(keras, stopper, save_to, saved, averager)
    ordered = [averager, stopper, keeper, _progress(keras, bar, stopper, on_epoch, epochs, initial_epoch), *callbacks]
    equalize = bool(params.get("equalize", False))
    train_ds = make_dataset(train.images, train.labels, batch_size, shuffle=True, seed=seed,
                            mixup=float(params.get("mixup", 0.0)), equalize=equalize)
    val_ds = make_dataset(val.images, val.labels, batch_size, shuffle=False, seed=seed, equalize=equalize)
    _skip_epochs(train_ds, initial_epoch)
    start = time.perf_counter()
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
        callbacks=[c for c in ordered if c is not None],
        class_weight=class_weights(train.labels) if params.get("class_weight") else None,
        shuffle=False,  # the input pipeline already reshuffles every epoch, seeded
        verbose=0,
    )
    return history, saved, time.perf_counter() - start


# --- checkpoints: resume where an interrupted run stopped (xraybench/checkpoints.py) ---------------


def _restore(model, saved: dict[str, Any]) -> int:
    """Put a checkpoint's model and optimizer variables back; returns the epochs it had done.

    ``model.variables`` holds the random layers' seed states too, so augmentation and dropout
    draw after a resume what they would have drawn without the interruption.
    """
    variables = model.variables
    if len(variables) != len(saved["model"]):
        raise checkpoints.CheckpointError(
            f"checkpoint holds {len(saved['model'])} model variables, the model has {len(variables)}; "
            "it was made by another model or version")
    model.optimizer.build(model.trainable_variables)
    slots = model.optimizer.variables
    if len(slots) != len(saved["optimizer"]):
        raise checkpoints.CheckpointError("checkpoint's optimizer state does not fit this model's optimizer")
    for variable, value in zip([*variables, *slots], [*saved["model"], *saved["optimizer"]]):
        if tuple(variable.shape) != tuple(value.shape):
            raise checkpoints.CheckpointError(f"checkpoint variable {variable.path} has shape {value.shape}, "
                                              f"the model's has {tuple(variable.shape)}")
        variable.assign(value)
    return int(saved["epoch"])


_ITERATORS_PER_EPOCH = 2  # keras/src/trainers/epoch_iterator.py, _enumerate_iterator


def _skip_epochs(train_ds, epochs_done: int) -> None:
    """Advance the input pipeline's reshuffling to where ``epochs_done`` epochs left it.

    A ``tf.data`` shuffle with a fixed seed draws one order per iterator, and Keras 3's
    ``EpochIterator`` makes two per epoch (one as the epoch starts, when no ``steps_per_epoch``
    is given, and one as it ends): epoch k trains on order 2k. A resumed fit starts a fresh
    pipeline, so it makes (and drops) 2k iterators first; test_resume checks the result is the
    uninterrupted run's, bit for bit. Keras' ``PyDataset`` path reshuffles once per epoch in
    ``on_epoch_end``, called here likewise.
    """
    if epochs_done <= 0:
        return
    if hasattr(train_ds, "on_epoch_end") and not hasattr(train_ds, "element_spec"):
        for _ in range(epochs_done):
            train_ds.on_epoch_end()
        return
    for _ in range(_ITERATORS_PER_EPOCH * epochs_done):
        iter(train_ds)  # made and dropped


def _checkpointer(keras, stopper, save_to, saved: dict[str, Any] | None, averager=None):
    """The callback that saves every epoch to ``save_to`` and, on a resume, puts the
    early-stopping state back (``wait``, ``best``, ``best_epoch``, ``best_weights``: with them a
    resumed run stops, and restores, exactly where an uninterrupted one would). With weight
    averaging it saves the raw weights as the model's and the average beside them."""
    import contextlib
    if save_to is None and saved is None:
        return None
    from xraybench.isolation import checkpoint as pause_point

    class Checkpoint(keras.callbacks.Callback):
        """After EarlyStopping in the list: its state for the epoch is already updated."""

        def on_train_begin(self, logs=None):
            self.history = {k: list(v) for k, v in (saved or {}).get("history", {}).items()}
            if saved:
                state = saved["stopper"]
                stopper.wait, stopper.best_epoch = int(state["wait"]), int(state["best_epoch"])
                stopper.stopped_epoch = int(state.get("stopped_epoch", 0))
                stopper.best = state["best"]
                stopper.best_weights = saved["best"]

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            if save_to is None:
                return
            with averager.raw_in_place() if averager is not None else contextlib.nullcontext():
                model_vars = [v.numpy() for v in self.model.variables]
            checkpoints.save(
                save_to, epoch + 1, self.history,
                model_vars, [v.numpy() for v in self.model.optimizer.variables],
                {"wait": int(stopper.wait), "best_epoch": int(stopper.best_epoch),
                 "stopped_epoch": int(stopper.stopped_epoch),
                 "best": None if stopper.best is None else float(stopper.best)},
                stopper.best_weights, average=None if averager is None else averager.average,
            )
            pause_point(f"epoch{epoch + 1}")  # tests interrupt here, at a known point

    return Checkpoint()


class KerasTrainer:
    """``xraybench.training.Trainer`` for ``KerasModel``."""

    epochs = True
    epoch_keys = recipes.EPOCH_KEYS
    prepare = staticmethod(import_quietly)

    def fit(self, spec: KerasModel, train: ImageSet, val: ImageSet, params: dict[str, Any], seed: int,
            precision: str = "auto", on_epoch: OnEpoch | None = None, callbacks: list | None = None) -> Fitted:
        why = unusable(ensure_keras_backend())
        if why:
            raise PluginFailure(f"cannot train {spec.name}: {why}")
        try:
            precision = resolve_precision(precision)
            fitted, info = fit_keras(spec, train, val, params, seed, precision, on_epoch, callbacks)
        except Exception as exc:
            if isinstance(exc, PluginFailure) or type(exc).__name__ == "TrialPruned":
                raise
            raise PluginFailure(f"training {spec.name} failed: {one_line(exc)}") from exc
        return Fitted(fitted.predict_proba, info, precision, model=fitted)

    def epoch_callback(self, on_epoch_end: Callable[[int, dict[str, float]], None]) -> Any:
        import keras

        return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs=None: on_epoch_end(epoch, logs or {}))

    def backend(self) -> str | None:
        import keras

        return keras.backend.backend()

    def save_model(self, fitted: Fitted, stem: Path) -> StoredModel:
        """The network without its augmentation layers as a ``.keras`` file (config and weights, no
        optimizer). Custom layers of a plugin must rebuild from their ``get_config`` (Keras' rule);
        ``saved_model.save`` loads the file back and keeps it only if it gives the run's scores."""
        model = getattr(fitted.model, "inference", None)
        if model is None:
            raise NotSavable("the trained Keras model is not at hand to save")
        path = Path(f"{stem}.keras")
        try:
            with quiet_backend_startup():
                model.save(path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StoredModel(path, "keras", [])

    def load_model(self, path: Path, spec: KerasModel | None, params: dict[str, Any], types: Sequence[str],
                   shape: tuple[int, ...]) -> Restored:
        """The ``.keras`` file with ``safe_mode=True`` (no lambdas or other code from the file), scoring as
        the run did (batch size, equalisation, shift averaging from its ``params``). The classes of
        custom layers come from xraybench and from the plugin's own ``build`` (``spec``): the layers of
        a model it builds name them, so a plugin needs no registration of its own."""
        why = unusable(ensure_keras_backend())
        if why:
            raise XRayBenchError(f"cannot load {path}: {why}")
        with quiet_backend_startup():
            import keras

            custom = {**_own_layers(keras), **_plugin_layers(keras, spec, params, shape)}
            model = keras.saving.load_model(path, custom_objects=custom, compile=False, safe_mode=True)
        fitted = FittedKeras.for_run(model, params, inference=model)
        return Restored(fitted.predict_proba, model, fitted.inputs)

    def check_build(self, spec: KerasModel, shape: tuple[int, int, int], params: dict[str, Any], seed: int) -> str:
        import keras

        return f"{_build(keras, spec, shape, params).count_params():,} parameters"

    def check_output(self, spec: KerasModel, shape: tuple[int, int, int], params: dict[str, Any], seed: int) -> str:
        """The untrained network's output on random inputs: shape (N, 1), finite, in [0, 1]."""
        import keras

        x = np.random.default_rng(seed).random((4, *shape), dtype=np.float32)
        out = np.asarray(_build(keras, spec, shape, params).predict(x, verbose=0))
        if out.shape != (4, 1):
            raise ValueError(f"output shape {out.shape}, expected (4, 1)")
        if not (np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1):
            raise ValueError(f"outputs are not probabilities: range [{out.min():.3g}, {out.max():.3g}]")
        return "(N, 1) in [0, 1]"


def _plugin_layers(keras, spec: KerasModel | None, params: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    """{registered name: class} of every layer in the plugin's model that is not Keras' own, from one
    ``build`` (no training); {} when the plugin is not installed or its build fails (a model of
    Keras layers alone loads without it)."""
    if spec is None or spec.build is None or len(shape) != 3:
        return {}
    try:
        built = spec.build(cast(tuple[int, int, int], tuple(shape)), dict(params))
    except Exception:
        return {}
    found: dict[str, Any] = {}
    todo = [built]
    while todo:
        layer = todo.pop()
        cls = type(layer)
        if cls.__module__.split(".")[0] != "keras":
            found[keras.saving.get_registered_name(cls)] = cls
        todo.extend(getattr(layer, "layers", []) or [])
    return found


TRAINER = KerasTrainer()
