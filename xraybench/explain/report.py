"""The report's "Where the models look" section: per run with a saved model, its most confident
errors and correct calls with their saliency maps, its shortcut check, and the hard cases.

Why it is in the report: pediatric chest X-rays carry text markers and hospital-specific borders,
and a model can score well by reading them (``explain/shortcut.py``); an accuracy table cannot
show that, a map beside the image can.

- **Cases** (:func:`confident_cases`): from the run's stored test scores, at its validation
  threshold: the ``CASES`` errors and the ``CASES`` correct calls farthest from the threshold (the
  model was surest). Their maps come from the run's saved model, by occlusion for every model (so
  that maps side by side mean the same thing; Grad-CAM's are at the last convolution's resolution,
  4x4 for the seed's CNN at 32 px), computed in a child process (``jobs.MapMaker``), so the report's own
  process never imports Keras or a backend; no child is started when no run shown has a model
  file here. The images are the run's test images, read from the data set its record names and
  used only when its fingerprint is the record's. ``max_runs`` (``report --explain-runs``) bounds
  the runs explained, best ranked first: each costs loading its model and ``2 * CASES`` maps.
- **Shortcut check**: the shares ``xraybench explain RUN_ID`` stored in the record (computing them
  over every test image is ``explain``'s job, not the report's); a run without them says how.
- **Hard cases** (:func:`hard_cases`): the test images that more than half of the runs on one data
  set (same fingerprint; done runs with scores, ensembles left out as they repeat their members)
  call wrongly at their own validation thresholds, from stored scores only (no model). Thumbnails
  are read from the data folder a record names, where the image is a file inside it.

Every text that comes from records, scores files, paths or plugins is escaped here (``html_text``,
``md_text``, ``md_code``): fragments are returned ready to place in the page.
"""

from __future__ import annotations

import base64
import functools
import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xraybench.errors import XRayBenchError
from xraybench.escaping import html_img, html_table, html_text, md_code, md_img, md_table, md_text
from xraybench.records import EXPLAIN_RUNS as DEFAULT_RUNS, LABELS, RunRecord, RunStatus

CASES = 3  # confident errors and confident correct calls shown per run
HARD_SHOWN = 12  # hard cases shown per data set
MIN_RUNS = 2  # runs on one data set before "most runs get it wrong" means anything
THUMB_SIDE = 96  # pixels a side of a hard case's thumbnail
MAP_SECONDS = 600.0  # the most one run's maps may take (its model loaded and run): a hanging model is a note

WHY = ("Pediatric chest X-rays carry text markers (L/R, hospital and technician labels) and hospital-specific "
       "borders, mostly in the outer band and corners of the film, and a model can score well by reading them "
       "instead of the lungs (Zech et al. 2018 found CNNs recognising the hospital from such marks). The shortcut "
       "check says how much of a model's evidence (its positive saliency, averaged over the test images) lies on "
       "that border band and its corners against the central lung field, beside each region's share of the image: "
       "a border or corner share well above its area share is a warning sign worth a look at the maps, not a proof.")


GRADCAM_NOTE = ("Grad-CAM's maps have the resolution of the network's last convolution (4x4 for the seed's CNN at "
                "32 px), upsampled: too coarse to tell a border band from its neighbours, so its shares lean towards "
                "the areas'. Occlusion's are the ones to compare across models.")


@dataclass(frozen=True)
class Case:
    """One test image of a run: id, true label, the run's score and the class called, its overlay (base64 PNG)."""

    image_id: str
    label: int
    score: float
    called: int
    overlay: str | None = None


@dataclass
class RunPanel:
    record: RunRecord
    threshold: float
    errors: list[Case]
    correct: list[Case]
    method: str | None = None  # the saliency method the maps were made with
    note: str = ""  # why there are no maps


@dataclass(frozen=True)
class HardCase:
    image_id: str
    label: int
    wrong: int
    runs: int
    mean_score: float
    thumbnail: str | None = None


@dataclass
class HardPanel:
    fingerprint: str
    runs: int
    hard: int  # images more than half of the runs call wrongly
    cases: list[HardCase]
    note: str = ""


@dataclass
class Section:
    runs: list[RunPanel] = field(default_factory=list)
    hard: list[HardPanel] = field(default_factory=list)
    with_model: int = 0  # done runs with a model file here
    max_runs: int = DEFAULT_RUNS
    seconds: float = 0.0


# --- choosing images ------------------------------------------------------------------------------------


def confident_cases(ids: Sequence[str], labels: Sequence[int], scores: Sequence[float], threshold: float,
                    k: int = CASES) -> tuple[list[Case], list[Case]]:
    """The ``k`` errors and the ``k`` correct calls farthest from ``threshold`` (most confident
    first), each image called PNEUMONIA where its score is at least ``threshold``."""
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=np.float64)
    called = (s >= threshold).astype(int)
    margin = np.abs(s - threshold)

    def top(mask: np.ndarray) -> list[Case]:
        index = np.flatnonzero(mask)
        index = index[np.argsort(-margin[index], kind="stable")][:k]
        return [Case(str(ids[int(i)]), int(y[i]), float(s[i]), int(called[i])) for i in index]

    return top(called != y), top(called == y)


def _threshold(record: RunRecord) -> float:
    from xraybench.explain.jobs import threshold_of

    return threshold_of(record)


def hard_cases(records: Iterable[RunRecord], scores_of: Callable[[str], dict | None], shown: int = HARD_SHOWN,
               min_runs: int = MIN_RUNS) -> list[HardPanel]:
    """Per data set (fingerprint), the test images most runs call wrongly at their validation
    thresholds: more than half of the runs that scored the image, most wrong first (then by how
    far the runs' mean score lies on the wrong side). Data sets with the most runs first."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        if record.status is RunStatus.DONE and record.kind != "ensemble" and record.fingerprint:
            groups.setdefault(record.fingerprint, []).append(record)
    panels = []
    for fingerprint, members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        tally: dict[str, list[Any]] = {}  # image id: [label, runs that scored it, runs wrong, sum of scores]
        runs = 0
        for record in members:
            scores = scores_of(record.run_id)
            if not scores:
                continue
            runs += 1
            t = _threshold(record)
            for i, y, s in zip(scores["test_ids"], scores["test_labels"], scores["test_scores"]):
                counts = tally.setdefault(str(i), [int(y), 0, 0, 0.0])
                counts[1:] = [counts[1] + 1, counts[2] + int((s >= t) != bool(y)), counts[3] + float(s)]
        if runs < min_runs:
            panels.append(HardPanel(fingerprint, runs, 0, [], note=f"{runs} run(s) with scores on this data set: "
                                    f"hard cases need at least {min_runs}"))
            continue
        hard = [HardCase(k, y, wrong, n, total / n) for k, (y, n, wrong, total) in tally.items() if wrong * 2 > n]
        # most often wrong first; then the mean score farthest on the wrong side (high for NORMAL, low for PNEUMONIA)
        hard.sort(key=lambda c: (-c.wrong / c.runs, -(c.mean_score if c.label == 0 else 1 - c.mean_score), c.image_id))
        panels.append(HardPanel(fingerprint, runs, len(hard), hard[:shown]))
    return panels


def _thumbnail(source: Path | None, image_id: str) -> str | None:
    """A grey thumbnail of ``source/image_id`` as base64 PNG, when that is an image file inside
    ``source`` (ids come from scores files: one that leads out of the folder is not followed), or
    the image of that name in an xraybench ``.npz`` (the built-in copy)."""
    from xraybench.data.images import resize_array
    from xraybench.data.parallel import decode_one

    if source is None:
        return None
    if source.suffix == ".npz":
        image = _npz_images(source).get(image_id)
        grey = None if image is None else resize_array(image, THUMB_SIDE, 1)
    else:
        try:
            root = source.resolve()
            path = (root / image_id).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                return None
        except (OSError, ValueError):
            return None
        grey, _mode, _size, _digest, _error = decode_one(str(path), THUMB_SIDE, 1)  # None on an error
    return None if grey is None else _png(np.repeat(np.asarray(grey), 3, axis=-1))


@functools.lru_cache(maxsize=2)
def _npz_images(path: Path) -> dict[str, np.ndarray]:
    """An xraybench ``.npz``'s images by name ({} when it cannot be read: no thumbnails, no error)."""
    from xraybench.data.builtin import load_arrays

    try:
        arrays = load_arrays(path)
    except XRayBenchError:  # DataError
        return {}
    return {str(name): image for name, image in zip(arrays["names"], arrays["images"])}


def _source(members: Sequence[RunRecord]) -> Path | None:
    """Where the records' images are here: their data folder, or the ``.npz`` they were read from."""
    for record in members:
        source = (record.data or {}).get("source")
        if isinstance(source, str) and source:
            path = Path(source).expanduser()
            if path.is_dir() or (path.suffix == ".npz" and path.is_file()):
                return path
    return None


def _png(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


# --- building the section ---------------------------------------------------------------------------------


def _has_model_here(store: Any, record: RunRecord) -> bool:
    info = record.saved_model
    return record.status is RunStatus.DONE and info is not None and (store.root / info.path).is_file()


def build(store: Any, ranked: Sequence[RunRecord], records: Sequence[RunRecord],
          scores_of: Callable[[str], dict | None], max_runs: int = DEFAULT_RUNS) -> Section:
    """The section's content: ``ranked`` (the leaderboard's order) first, then the other
    ``records``, the first ``max_runs`` done runs whose model file is here explained; the hard
    cases from every record. One run's failure (data moved, a changed model file) is a note on its
    panel, never the report's end."""
    from xraybench.explain.jobs import MapMaker

    start = time.perf_counter()
    seen: set[str] = set()
    candidates = []
    for record in [*ranked, *records]:
        if record.run_id not in seen and _has_model_here(store, record):
            seen.add(record.run_id)
            candidates.append(record)
    section = Section(with_model=len(candidates), max_runs=max_runs)
    splits: dict[tuple[Any, ...], Any] = {}
    registry: list[Any] = []
    with MapMaker(store, timeout=MAP_SECONDS) as maker:
        for record in candidates[:max(0, max_runs)]:
            section.runs.append(_panel(record, scores_of, maker, splits, registry))
    by_fingerprint: dict[str, list[RunRecord]] = {}
    for record in records:
        by_fingerprint.setdefault(record.fingerprint, []).append(record)
    section.hard = hard_cases(records, scores_of)
    for panel in section.hard:
        source = _source(by_fingerprint.get(panel.fingerprint, []))
        panel.cases = [HardCase(c.image_id, c.label, c.wrong, c.runs, c.mean_score, _thumbnail(source, c.image_id))
                       for c in panel.cases]
    section.seconds = time.perf_counter() - start
    return section


def _panel(record: RunRecord, scores_of: Callable[[str], dict | None], maker: Any, splits: dict[tuple[Any, ...], Any],
           registry: list[Any]) -> RunPanel:
    from xraybench.explain.overlay import overlay_rgb
    from xraybench.saved_model import read_test_split

    threshold = _threshold(record)
    scores = scores_of(record.run_id)
    if not scores:
        return RunPanel(record, threshold, [], [], note="no per-image test scores stored: no cases to show")
    errors, correct = confident_cases(scores["test_ids"], scores["test_labels"], scores["test_scores"], threshold)
    panel = RunPanel(record, threshold, errors, correct)
    cases = errors + correct
    if not cases:
        return panel
    key = ((record.data or {}).get("source"), record.image_size, record.channels, record.fingerprint)
    try:
        if key not in splits:
            if not registry:
                from xraybench.plugins import load_registry

                registry.append(load_registry())
            try:
                splits[key] = read_test_split(record, registry=registry[0])
            except XRayBenchError as exc:
                splits[key] = exc
        split = splits[key]
        if isinstance(split, XRayBenchError):
            raise split
        where = {image_id: i for i, image_id in enumerate(split.ids)}
        missing = [c.image_id for c in cases if c.image_id not in where]
        if missing:
            raise XRayBenchError(f"test image {missing[0]} of the run's scores is not in its data set")
        images = split.images[[where[c.image_id] for c in cases]]
        result = maker.maps(record, images, "occlusion")
    except XRayBenchError as exc:
        panel.note = f"maps not drawn: {exc}"
        return panel
    drawn = [Case(c.image_id, c.label, c.score, c.called, _png(overlay_rgb(image, saliency)))
             for c, image, saliency in zip(cases, images, result.maps)]
    panel.errors, panel.correct = drawn[:len(errors)], drawn[len(errors):]
    panel.method = result.method
    return panel


# --- rendering --------------------------------------------------------------------------------------------

REGIONS = (("border", "border_share", "uniform_border_share"), ("corners", "corner_share", "uniform_corner_share"),
           ("lung field", "lung_share", "uniform_lung_share"))


def _run_title(record: RunRecord) -> str:
    return f"{record.model} {record.image_size} px, seed {record.seed} (run {record.run_id})"


def _caption(case: Case, threshold: float) -> str:
    verdict = "correct" if case.called == case.label else "wrong"
    return (f"{case.image_id}: true {LABELS[case.label]}, P(PNEUMONIA) {case.score:.3f} at threshold {threshold:.3f}, "
            f"called {LABELS[case.called]} ({verdict})")


def _shares_rows(record: RunRecord) -> list[tuple[str, list[str]]]:
    """(method with its image count, [share (area share) per region]) for each stored method."""
    rows = []
    for method, s in sorted((record.shortcut_check or {}).items()):
        drawn = s.get("n_images", 0) + s.get("n_without_saliency", 0)
        of = f"{drawn} of {s.get('test_images')} test images, seed {s.get('sample_seed')}" \
            if s.get("sample_seed") is not None else f"{drawn} test images"
        rows.append((f"{method} ({of})", [f"{s[share]:.1%} ({s[area]:.1%})" for _, share, area in REGIONS]))
    return rows


def _not_measured(record: RunRecord, text: Callable[[str], str], code: Callable[[str], str]) -> str:
    """How to measure the check, its command as code in each format (``text`` escapes the words)."""
    return (f"{text('Shortcut check not measured yet:')} {code(f'xraybench explain {record.run_id}')} "
            f"{text('measures it and stores it in the record.')}")


SHARES_HEAD = ("Shortcut check: share of saliency (share of area)", *(name for name, _, _ in REGIONS))
CASE_LISTS = (("Most confident errors", "errors"), ("Most confident correct calls", "correct"))


def _panel_html(panel: RunPanel) -> list[str]:
    """One run: its shortcut-check table (or how to measure it), notes, and its cases with their maps."""
    rows = _shares_rows(panel.record)
    parts = [f'<h3 class="explained">{html_text(_run_title(panel.record))}</h3>',
             html_table(SHARES_HEAD, [(m, *cells) for m, cells in rows], ' class="shortcut"') if rows
             else f"<p>{_not_measured(panel.record, html_text, lambda c: f'<code>{html_text(c)}</code>')}</p>"]
    notes = [GRADCAM_NOTE] if "gradcam" in (panel.record.shortcut_check or {}) else []
    parts += [f"<p>{html_text(note)}</p>" for note in [*notes, panel.note] if note]
    for title, attr in CASE_LISTS:
        cases: list[Case] = getattr(panel, attr)
        if not cases:
            parts.append(f"<p>{html_text(title)}: none.</p>")
            continue
        figures = "".join(
            f'<figure class="case">{html_img(c.overlay, "saliency map " + c.image_id) if c.overlay else ""}'
            f"<figcaption>{html_text(_caption(c, panel.threshold))}</figcaption></figure>" for c in cases)
        method = f" ({panel.method} maps over the image)" if panel.method else ""
        parts.append(f"<h4>{html_text(title + method)}</h4><div class=\"cases\">{figures}</div>")
    return parts


def _hard_html(hard: HardPanel) -> list[str]:
    """One data set's hard cases: what they are, then a table of thumbnails, ids and how often wrong."""
    intro = (f"Data set {hard.fingerprint[:12]}...: {hard.hard} test image(s) are called wrongly by more than "
             f"half of its {hard.runs} runs, each at its validation threshold; the {len(hard.cases)} most "
             "often wrong are shown (thumbnails read from the data the records name, where it is here; ensembles "
             "are not counted as runs).")
    parts = [f"<p>{html_text(hard.note or intro)}</p>"]
    if hard.cases:
        rows_html = "".join(
            f"<tr><td>{html_img(c.thumbnail, 'thumbnail ' + c.image_id) if c.thumbnail else ''}</td>"
            f'<td class="id">{html_text(c.image_id)}</td><td>{html_text(LABELS[c.label])}</td>'
            f"<td>{c.wrong} of {c.runs}</td><td>{c.mean_score:.3f}</td></tr>" for c in hard.cases)
        parts.append('<table class="hard"><thead><tr><th>Image</th><th>Id</th><th>True</th><th>Runs wrong</th>'
                     f"<th>Mean P(PNEUMONIA)</th></tr></thead><tbody>{rows_html}</tbody></table>")
    return parts


def render_html(section: Section) -> str:
    """The section as an HTML fragment (``<h2>`` and what follows), every text escaped."""
    parts = ['<h2 id="explanations">Where the models look</h2>', f"<p>{html_text(WHY)}</p>"]
    if not section.runs:
        parts.append("<p>" + html_text(
            "No run here has its model file, so no maps are drawn: runs recorded with this xraybench keep theirs "
            "beside the record (published results folders keep only its hash)." if not section.with_model else
            "Maps are off (report --explain-runs 0).") + "</p>")
    for panel in section.runs:
        parts += _panel_html(panel)
    if section.with_model > len(section.runs) and section.runs:
        parts.append("<p>" + html_text(f"{section.with_model - len(section.runs)} more run(s) with a model file are not "
                                       f"drawn (report --explain-runs N draws up to N).") + "</p>")
    parts.append('<h3 id="hard-cases">Hard cases: test images most runs get wrong</h3>')
    if not section.hard:
        parts.append("<p>No done runs with per-image scores.</p>")
    for hard in section.hard:
        parts += _hard_html(hard)
    parts.append(f"<p>{html_text(f'This section took {section.seconds:.1f}s to build.')}</p>")
    return "\n".join(parts) + "\n"


STYLE = ("div.cases { display: flex; flex-wrap: wrap; gap: 0.5rem; } "
         "figure.case { width: 230px; margin: 0.3rem; font-size: 11px; } "
         "figure.case img { width: 224px; image-rendering: pixelated; } "
         "figure.case figcaption { overflow-wrap: anywhere; } "
         "table.hard td.id { font-family: monospace; word-break: break-all; } "
         "table.hard img { width: 64px; }")


def render_markdown(section: Section) -> str:
    """The section in Markdown, for the report's twin; every text escaped."""
    lines = ["## Where the models look\n", md_text(WHY) + "\n"]
    if not section.runs:
        lines.append(md_text("No run here has its model file, so no maps are drawn." if not section.with_model
                             else "Maps are off (report --explain-runs 0).") + "\n")
    for panel in section.runs:
        lines.append(f"### {md_text(_run_title(panel.record))}\n")
        rows = _shares_rows(panel.record)
        if rows:
            lines += [*md_table(SHARES_HEAD, [(m, *cells) for m, cells in rows]), ""]
        else:
            lines.append(f"{_not_measured(panel.record, md_text, md_code)}\n")
        notes = [GRADCAM_NOTE] if "gradcam" in (panel.record.shortcut_check or {}) else []
        lines += [f"{md_text(note)}\n" for note in [*notes, panel.note] if note]
        for title, attr in CASE_LISTS:
            cases = getattr(panel, attr)
            lines.append(f"#### {md_text(title)}\n")
            for c in cases:
                lines.append(f"- {md_text(_caption(c, panel.threshold))}" + (f"\n\n  {md_img(c.overlay, c.image_id)}"
                                                                              if c.overlay else ""))
            lines.append("" if cases else "none\n")
    lines.append("### Hard cases: test images most runs get wrong\n")
    for hard in section.hard:
        if hard.note:
            lines.append(f"{md_text(hard.note)}\n")
            continue
        lines.append(f"Data set {md_code(hard.fingerprint[:12])}: {hard.hard} test image(s) called wrongly by more "
                     f"than half of its {hard.runs} runs (ensembles not counted).\n")
        lines += [f"- {md_code(c.image_id)}: true {LABELS[c.label]}, wrong in {c.wrong} of {c.runs}, mean "
                  f"P(PNEUMONIA) {c.mean_score:.3f}" for c in hard.cases]
        lines.append("")
    return "\n".join(lines) + "\n"
