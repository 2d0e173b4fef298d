"""Published figures (the seed, Kermany 2018, MedMNIST v2) shown beside our runs, always marked
as published, never as runs, and never the reference model rows are compared with (that is a
plugin's ``ModelSpec.reference``: ``xraybench.leaderboard.reference``).

Only numbers stated in the cited sources; missing ones stay None.
"""

from __future__ import annotations

FIGURES: list[dict] = [
    {
        "model": "seed CNN (published)",
        "source": "the seed's Keras CNN, 624-image test set",
        "accuracy": 0.86,
        "per_class": {
            "NORMAL": {"precision": 0.95, "recall": 0.67, "f1": 0.78},
            "PNEUMONIA": {"precision": 0.83, "recall": 0.98, "f1": 0.90},
        },
        "roc_auc": None,
        "image_size": None,
    },
    {
        "model": "Kermany 2018 InceptionV3 (published)",
        "source": "Kermany et al., Cell 2018: ImageNet transfer learning",
        "accuracy": 0.928,
        "roc_auc": 0.968,
        "sensitivity": 0.932,
        "specificity": 0.901,
        "per_class": {"NORMAL": {"recall": 0.901}, "PNEUMONIA": {"recall": 0.932}},
        "image_size": None,
    },
    {"model": "MedMNIST v2 ResNet-18 28px (published)", "source": "Yang et al. 2023, PneumoniaMNIST",
     "accuracy": 0.854, "roc_auc": 0.944, "image_size": 28},
    {"model": "MedMNIST v2 ResNet-50 224px (published)", "source": "Yang et al. 2023, PneumoniaMNIST",
     "accuracy": 0.884, "roc_auc": 0.962, "image_size": 224},
    {"model": "MedMNIST v2 AutoKeras (published)", "source": "Yang et al. 2023, PneumoniaMNIST",
     "accuracy": 0.878, "roc_auc": 0.947, "image_size": 28},
    {"model": "MedMNIST v2 Google AutoML Vision (published)", "source": "Yang et al. 2023, PneumoniaMNIST",
     "accuracy": 0.946, "roc_auc": 0.991, "image_size": 28},
]

SEED_MODEL = "seed CNN (published)"
# Where the difference is explained at length; printed after a run and under the leaderboard.
WHY_DOC = "docs/results.md, \"Why your first result differs from the seed's 0.86\""
# Why a run here and the seed's differ (after a run's first report and in the leaderboard's footer):
WHY_SEED_DIFFERS = (
    "Why they differ: the seed appears to have early-stopped on its test set; here early stopping and the (val) "
    "threshold use a patient-grouped validation split, test is read once, and the test split is shifted (its NORMAL "
    "images are called PNEUMONIA far more often than validation's).")


def seed_figures() -> dict:
    """The seed's published figures (its accuracy, per-class precision, recall and F1)."""
    return next(fig for fig in FIGURES if fig["model"] == SEED_MODEL)
