"""From what ``run`` (and ``tune``) were asked for to checked, prepared runs, before anything trains.

The CLI parses; this decides which models × seeds run with which parameters, which flags apply
to which model, and which run a ``--resume`` continues; ``runner.py`` then runs each one.
Every model, parameter and data set is checked here, so a typo fails in one line before the
first model trains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from xraybench.errors import XRayBenchError
from xraybench.runner import Prepared, RunRequest, check_resumed, prepare, resume_request


def training_flags(epochs: int | None, batch_size: int | None = None) -> dict[str, Any]:
    """``--epochs`` / ``--batch-size`` as parameter overrides, checked (each at least 1)."""
    flags: dict[str, Any] = {}
    if epochs is not None:
        if epochs < 1:
            raise XRayBenchError(f"--epochs must be at least 1, got {epochs}")
        flags["epochs"] = epochs
    if batch_size is not None:
        if batch_size < 1:
            raise XRayBenchError(f"--batch-size must be at least 1, got {batch_size}")
        flags["batch_size"] = batch_size
    return flags


def flag_overrides(spec, params: dict[str, Any], flags: dict[str, Any], console=None) -> dict[str, Any]:
    """``--param`` overrides plus the ``--epochs`` / ``--batch-size`` flags that apply to ``spec``.

    The flags set Keras training parameters; a model without such a parameter (scikit-learn)
    ignores them with a note, in ``run`` and ``tune`` alike (several models share one command
    line), while an explicit ``--param`` it does not know stays an error."""
    own = dict(params)
    ignored = []
    for key, value in flags.items():
        if key in spec.all_defaults():
            own[key] = value
        else:
            ignored.append(f"--{key.replace('_', '-')}")
    if ignored and console is not None:
        from rich.markup import escape

        console.print(escape(f"note: {spec.name} has no {' or '.join(ignored)} parameter; ignored for it"))
    return own


@dataclass
class RunPlan:
    """What ``run`` was asked for: each of ``models`` once per seed, or the one run ``resume`` names.

    ``settings`` holds what every run shares (data, size, precision, timeout, the command...);
    each run gets its own model, seed and parameters (``overrides`` plus the flags it has)."""

    settings: RunRequest
    models: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    resume: str | None = None

    def check(self) -> None:
        """What can be checked before any plugin or data is loaded."""
        sensitivity = self.settings.target_sensitivity
        if sensitivity is not None and not 0.0 < sensitivity <= 1.0:
            raise XRayBenchError(f"--target-sensitivity must be in (0, 1], got {sensitivity}")
        if bool(self.models) == bool(self.resume):
            raise XRayBenchError("run needs --model NAME, or --resume RUN_ID (which takes the run's own model and settings)")

    def prepare(self, registry, store, console=None) -> list[Prepared]:
        """Every run resolved and its data loaded (once per distinct data set), in the order they run."""
        datasets: dict = {}
        prepared = []
        if self.resume:
            request, resumed = resume_request(store, self.resume, self.settings.command, self.settings.data)
            prepared.append(prepare(request, registry, datasets))
            check_resumed(prepared[0], resumed)
        for model in self.models:
            own = flag_overrides(registry.model(model), self.overrides, self.flags, console)
            for seed in self.seeds:
                request = dataclasses.replace(
                    self.settings, model=model, seed=seed, params=own, disabled=list(self.settings.disabled),
                    tags={"overrides": own} if own else {}, checkpoints=str(store.root),
                )
                prepared.append(prepare(request, registry, datasets))
        return prepared
