"""The training benchmarks' shared setup (benchmarks/_setup.py) on tiny generated data.

The benchmarks themselves need the real data and minutes; these tests check that the pieces
they share train and time what they say, and that ``gpu_baseline.py`` (run on a GPU machine
where nobody watches it fail) still runs end to end.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from proctools import kill_group

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

pytestmark = pytest.mark.slow


@pytest.fixture
def splits(xray_data):
    from xraybench.data import load_dataset

    return load_dataset(xray_data, image_size=16).splits


def test_timed_fit_clocks_every_epoch_of_the_registry_model(splits):
    from _setup import head, model_params, timed_fit

    spec, params = model_params(epochs=2, patience=10, batch_size=8)
    assert spec.name == "baseline_cnn" and params["epochs"] == 2 and "learning_rate" in params
    fitted, times = timed_fit(spec, head(splits.train, 24), splits.val, params)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert np.asarray(fitted.predict(splits.test.images)).reshape(-1).shape == (len(splits.test),)


def test_plain_twin_trains_on_its_scaled_pipeline(splits):
    import keras

    from _setup import plain_model, plain_tfdata

    train = splits.train
    batches = list(plain_tfdata(train, batch_size=8).as_numpy_iterator())
    assert sum(len(y) for _, y in batches) == len(train)
    assert all(x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0 for x, _ in batches)
    assert sorted(np.concatenate([y for _, y in batches])) == sorted(train.labels.astype("float32"))
    model = plain_model(keras, 16)
    history = model.fit(plain_tfdata(train, batch_size=8), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_gpu_baseline_child_runs_end_to_end(xray_data, tmp_path):
    """One configuration of gpu_baseline.py, from another folder, as the GPU run starts it."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "gpu_baseline.py"), "--one", "tensorflow:float32:8", "--image-size", "16",
         "--epochs", "2", "--data", str(xray_data)],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        kill_group(proc)
    assert proc.returncode == 0, err[-2000:]
    row = json.loads(out.strip().splitlines()[-1])
    assert (row["backend"], row["precision"], row["batch"], row["epochs"]) == ("tensorflow", "float32", 8, 2)
    assert row["img_s_after_epoch1"] > 0 and 0.0 <= row["test_accuracy"] <= 1.0
