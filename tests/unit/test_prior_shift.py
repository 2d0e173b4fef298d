"""The transductive prior-shift operating point (prior_shift.py), its record fields, backfill and leaderboard."""

import copy
import inspect
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recordfactory import make_record

from xraybench import leaderboard as lb
from xraybench import prior_shift
from xraybench.records import RunRecord, Threshold, parse
from xraybench.results import ResultStore


def _draw(rng: np.random.Generator, n: int, prior: float, distort=lambda s: s):
    """Labels with P(PNEUMONIA) = ``prior`` and scores from fixed class-conditional distributions
    (logit ~ N(+-1.2, 1)): calibrated at prior 0.5; ``distort`` makes them uncalibrated."""
    y = (rng.random(n) < prior).astype(int)
    z = np.where(y == 1, rng.normal(1.2, 1.0, n), rng.normal(-1.2, 1.0, n))
    return y, distort(1 / (1 + np.exp(-z)))


def _shifted(seed=0, n=4000, val_prior=0.75, test_prior=0.6, distort=lambda s: s):
    rng = np.random.default_rng(seed)
    yv, sv = _draw(rng, n, val_prior, distort)
    yt, st_ = _draw(rng, n, test_prior, distort)
    return yv, sv, yt, st_


@pytest.mark.parametrize("distort, bbse", [(lambda s: s, True), (lambda s: 0.5 + 0.4 * (s - 0.5), True),
                                           (lambda s: s ** 0.3, False)],
                         ids=["calibrated", "squashed", "overconfident-pneumonia"])
def test_em_and_bbse_recover_a_known_prior_shift(distort, bbse):
    """EM after Platt scaling recovers the prior from uncalibrated scores too. BBSE reads the hard
    decisions at 0.5: with nearly every score above 0.5 (s ** 0.3) TPR and FPR are both near 1 and
    it is noisy, which is why it is only a cross-check."""
    yv, sv, yt, st_ = _shifted(distort=distort)
    result = prior_shift.estimate(yv, sv, st_)
    assert result.validation_prior == pytest.approx(yv.mean())
    assert result.estimated_prior == pytest.approx(yt.mean(), abs=0.03)
    if bbse:
        assert result.bbse_prior == pytest.approx(yt.mean(), abs=0.03)
    assert result.converged and 0 < result.iterations < prior_shift.MAX_ITERATIONS
    assert result.method == prior_shift.METHOD


def test_no_shift_estimates_the_validation_prior():
    yv, sv, _, st_ = _shifted(val_prior=0.7, test_prior=0.7, seed=3)
    result = prior_shift.estimate(yv, sv, st_)
    assert result.estimated_prior == pytest.approx(0.7, abs=0.03)


def test_threshold_moves_the_right_way():
    """Fewer PNEUMONIA cases on test than on validation: the bar for PNEUMONIA rises; more: it falls."""
    rng = np.random.default_rng(1)
    yv, sv = _draw(rng, 3000, 0.5)
    base = prior_shift.estimate(yv, sv, _draw(rng, 3000, 0.5)[1]).threshold
    fewer = prior_shift.estimate(yv, sv, _draw(rng, 3000, 0.25)[1])
    more = prior_shift.estimate(yv, sv, _draw(rng, 3000, 0.8)[1])
    assert fewer.threshold > base > more.threshold
    assert base == pytest.approx(0.5, abs=0.05)  # calibrated scores, no shift: about 0.5
    # the threshold is the adjusted-posterior >= 0.5 decision on the raw score
    platt = prior_shift.fit_platt(yv, sv)
    q = platt(np.array([fewer.threshold]))[0]
    adjusted = q * fewer.estimated_prior / fewer.validation_prior
    adjusted /= adjusted + (1 - q) * (1 - fewer.estimated_prior) / (1 - fewer.validation_prior)
    assert adjusted == pytest.approx(0.5, abs=1e-6)


def test_the_estimator_cannot_read_test_labels():
    params = list(inspect.signature(prior_shift.estimate).parameters)
    assert params == ["val_labels", "val_scores", "test_scores", "tol", "max_iterations"]
    assert not any("label" in p and "test" in p for p in params)


def test_record_fields_and_true_prior():
    yv, sv, yt, st_ = _shifted(n=600)
    fields = prior_shift.record_fields(yv, sv, yt, st_, seed=7, resamples=50)
    shift = fields["prior_shift"]
    assert set(shift) == {"estimated_prior", "bbse_prior", "validation_prior", "true_prior", "threshold", "method",
                          "iterations", "converged"}
    assert shift["true_prior"] == pytest.approx(yt.mean())
    assert fields["metrics_at_prior_shift"]["threshold"] == shift["threshold"]
    assert fields["intervals_at_prior_shift"]["_meta"] == {"resamples": 50, "seed": 7, "level": 0.95,
                                                          "threshold": shift["threshold"]}
    # the estimate does not depend on the test labels
    other = prior_shift.record_fields(yv, sv, 1 - yt, st_, seed=7, resamples=50)["prior_shift"]
    assert {k: v for k, v in other.items() if k != "true_prior"} == {k: v for k, v in shift.items() if k != "true_prior"}


def test_degenerate_validation_keeps_half():
    result = prior_shift.estimate([1, 1, 1], [0.9, 0.8, 0.7], [0.1, 0.9])
    assert result.threshold == 0.5 and not result.converged and "not estimated" in result.method
    reversed_ = prior_shift.estimate([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], [0.1, 0.9])  # scores rank backwards
    assert reversed_.threshold == 0.5 and "slope" in reversed_.method


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=2, max_size=40),
       st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_estimates_and_threshold_stay_in_the_unit_interval_and_are_deterministic(val, test):
    yv = [int(a) for a, _ in val]
    sv = [b for _, b in val]
    first = prior_shift.estimate(yv, sv, test)
    assert 0.0 <= first.estimated_prior <= 1.0 and 0.0 <= first.threshold <= 1.0
    assert first.bbse_prior is None or 0.0 <= first.bbse_prior <= 1.0
    assert prior_shift.estimate(yv, sv, test) == first


# --- the record, backfill and leaderboard --------------------------------------------------

def _with_validation(model="m", seed=1, n=60):
    """A factory record (older: no prior-shift fields) whose scores file holds validation scores too."""
    record, scores = make_record(model, seed, n=n)
    rng = np.random.default_rng(seed + 100)
    yv = (np.arange(n) % 4 != 0).astype(int)
    scores.update(val_ids=[f"v{i}" for i in range(n)], val_labels=yv.tolist(),
                  val_scores=np.clip(yv * 0.6 + rng.random(n) * 0.5 - 0.05, 0, 1).tolist())
    return record, scores


def test_prior_threshold_round_trips():
    assert Threshold.parse("prior") is Threshold.PRIOR and Threshold.parse(Threshold.PRIOR) is Threshold.PRIOR
    assert (Threshold.PRIOR.metrics_key, Threshold.PRIOR.intervals_key) == ("metrics_at_prior_shift",
                                                                           "intervals_at_prior_shift")
    assert Threshold.PRIOR.transductive and not Threshold.VAL.transductive and not Threshold.FIXED.transductive
    record, scores = _with_validation()
    record.update(prior_shift.record_fields(scores["val_labels"], scores["val_scores"], scores["test_labels"],
                                            scores["test_scores"], seed=1, resamples=50))
    parsed = parse(record)
    assert isinstance(parsed, RunRecord) and parsed.prior_shift == record["prior_shift"]
    assert parsed.metrics_at("prior") == record["metrics_at_prior_shift"] and parsed.intervals_at("prior")
    assert parse(json.loads(json.dumps(parsed.to_dict()))) == parsed
    old = parse(make_record("m", 1)[0])  # a record from before: valid, lacking the fields
    assert old.prior_shift is None and old.metrics_at(Threshold.PRIOR) is None and old.intervals_at("prior") == {}


def test_backfill_adds_prior_shift_and_leaves_other_records_untouched(tmp_path):
    from xraybench.backfill import backfill

    store = ResultStore(tmp_path)
    lacking, lacking_scores = _with_validation("a", 1)
    stored_before = json.loads(store.save(lacking, lacking_scores).read_text())
    complete, complete_scores = _with_validation("b", 2)
    complete.update(prior_shift.record_fields(complete_scores["val_labels"], complete_scores["val_scores"],
                                              complete_scores["test_labels"], complete_scores["test_scores"], seed=2))
    complete_path = store.save(complete, complete_scores)
    no_val, no_val_scores = make_record("c", 3)  # a scores file without validation scores: nothing to compute from
    no_val_path = store.save(no_val, no_val_scores)
    failed, _ = make_record("d", 4, status="error")
    failed_path = store.save(failed)
    before = {p: p.read_bytes() for p in (complete_path, no_val_path, failed_path)}

    changed = backfill(store)
    assert [name for name, _ in changed] == [f"{lacking['run_id']}.json"] and "prior-shift" in changed[0][1]
    assert {p: p.read_bytes() for p in before} == before
    after = store.get(lacking["run_id"])
    expected = prior_shift.record_fields(lacking_scores["val_labels"], lacking_scores["val_scores"],
                                         lacking_scores["test_labels"], lacking_scores["test_scores"], seed=1)
    assert after["prior_shift"] == expected["prior_shift"]
    assert after["prior_shift"]["true_prior"] == pytest.approx(np.mean(lacking_scores["test_labels"]))
    assert after["metrics_at_prior_shift"] == expected["metrics_at_prior_shift"]
    assert after["intervals_at_prior_shift"]["accuracy"] == expected["intervals_at_prior_shift"]["accuracy"]

    def unchanged(d):
        return {k: v for k, v in d.items() if "prior_shift" not in k}

    assert unchanged(after) == unchanged(stored_before)  # nothing else changed
    assert backfill(store) == []  # once


def test_leaderboard_at_prior_skips_records_without_it_and_says_it_is_transductive(tmp_path, xb):
    with_it, scores = _with_validation("baseline_cnn", 1)
    with_it.update(prior_shift.record_fields(scores["val_labels"], scores["val_scores"], scores["test_labels"],
                                             scores["test_scores"], seed=1, resamples=50))
    older = make_record("older", 1)[0]
    records = [with_it, older]
    rows = lb.build_rows(records, threshold="prior")
    assert [r.model for r in rows] == ["baseline_cnn"] and rows[0].transductive
    assert rows[0].threshold.startswith("prior (transductive")
    assert rows[0].estimates["accuracy"] == pytest.approx(with_it["metrics_at_prior_shift"]["accuracy"])
    assert "TRANSDUCTIVE" in lb.footnote(rows) and "TRANSDUCTIVE" not in lb.footnote(lb.build_rows(records))
    assert {r.model for r in lb.build_rows(records, threshold="val")} == {"baseline_cnn", "older"}
    assert lb.lacking([parse(r) for r in records], "prior") == 1

    store = ResultStore(tmp_path / "results")
    store.save(with_it, scores)
    store.save(copy.deepcopy(older))
    out = xb("leaderboard", "--results", str(tmp_path / "results"), "--threshold", "prior", "--no-published",
             env={"COLUMNS": "250"})
    assert out.code == 0, out.err
    assert "transductive" in out.out and "baseline_cnn" in out.out and "older" not in out.out
    assert "1 done run without metrics at --threshold prior" in out.err
