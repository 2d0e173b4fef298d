"""run_plan: what `run` was asked for, turned into prepared runs in order, before anything trains."""

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from xraybench import run_plan
from xraybench.errors import XRayBenchError
from xraybench.runner import RunRequest
from xraybench.specs import GenericModel, KerasModel


class _Registry:
    def __init__(self, *specs):
        self.models = {s.name: s for s in specs}

    def model(self, name):
        if name not in self.models:
            raise XRayBenchError(f"unknown model {name!r}")
        return self.models[name]


def test_models_times_seeds_in_order_with_the_flags_each_model_has(monkeypatch, tmp_path):
    prepared = []
    monkeypatch.setattr(run_plan, "prepare", lambda request, registry, datasets: prepared.append(request) or request)
    registry = _Registry(KerasModel(name="k", description=""), GenericModel(name="g", description="", defaults={"c": 1.0}))
    out = io.StringIO()
    plan = run_plan.RunPlan(RunRequest(model="", data="somewhere", timeout=5.0, command="xraybench run"),
                            models=["k", "g"], seeds=[1, 2], overrides={}, flags=run_plan.training_flags(3, None))
    plan.check()
    got = plan.prepare(registry, SimpleNamespace(root=tmp_path), Console(file=out, width=200))
    assert [(r.model, r.seed) for r in got] == [("k", 1), ("k", 2), ("g", 1), ("g", 2)]
    assert [r.params for r in got] == [{"epochs": 3}, {"epochs": 3}, {}, {}]
    assert {(r.data, r.timeout, r.command, r.checkpoints) for r in got} == {("somewhere", 5.0, "xraybench run", str(tmp_path))}
    assert got[0].tags == {"overrides": {"epochs": 3}} and got[2].tags == {}
    assert out.getvalue().count("g has no --epochs parameter; ignored for it") == 1  # once per model, not per seed


@pytest.mark.parametrize("plan, message", [
    (run_plan.RunPlan(RunRequest(model="")), "run needs --model NAME, or --resume RUN_ID"),
    (run_plan.RunPlan(RunRequest(model=""), models=["m"], resume="r1"), "run needs --model NAME, or --resume RUN_ID"),
    (run_plan.RunPlan(RunRequest(model="", target_sensitivity=1.5), models=["m"]), "--target-sensitivity must be in (0, 1]"),
])
def test_what_is_checked_before_anything_loads(plan, message):
    with pytest.raises(XRayBenchError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        plan.check()


@pytest.mark.parametrize("epochs, batch_size, message", [(0, None, "--epochs must be at least 1, got 0"),
                                                         (None, -2, "--batch-size must be at least 1, got -2")])
def test_training_flags_are_checked(epochs, batch_size, message):
    with pytest.raises(XRayBenchError, match=message):
        run_plan.training_flags(epochs, batch_size)
    assert run_plan.training_flags(None, None) == {}
