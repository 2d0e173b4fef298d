"""A real ``xraybench tune`` with a password in its storage URL: the password is nowhere afterwards.

Every output (stdout, stderr) of tune, leaderboard (markdown/json/csv), studies, tune --show and
report, and every file under the results, cache, report and study folders (the SQLite study's
raw bytes included) is searched for the password, raw and percent-encoded.
"""

import json
import os
import re
import secrets
from pathlib import Path
from urllib.parse import quote

import pytest

from xraybench.testing import make_kaggle_tree


def _study_texts(url: str, study: str) -> str:
    """Everything Optuna keeps about the study (attributes, params, trial attributes), as text."""
    from optuna.storages import RDBStorage

    storage = RDBStorage(url)
    study_id = storage.get_study_id_from_name(study)
    parts = [storage.get_study_user_attrs(study_id), storage.get_study_system_attrs(study_id)]
    for t in storage.get_all_trials(study_id):
        parts += [t.params, t.user_attrs, t.system_attrs, t.distributions]
    return repr(parts)


def _storages(tmp: Path, token: str) -> list[tuple[str, str, list[str]]]:
    """(label, storage URL, secret forms) for each storage reachable here."""
    password = f"Pw@:/{token}?&="  # URL delimiters inside, so it must be percent-encoded in a URL
    enc = quote(password, safe="")
    out = [("sqlite", f"sqlite:///{tmp / 'study.sqlite3'}?password={enc}&sslpassword={token}k", [password, enc, token])]
    pg = os.environ.get("XRAYBENCH_TEST_POSTGRES")
    if pg:  # trust authentication: the server ignores the password, so any will do
        scheme, rest = pg.split("://", 1)
        user, host = rest.split("@", 1)
        out.append(("postgresql", f"{scheme}://{user}:{enc}@{host}?sslpassword={token}k&application_name=xb",
                    [password, enc, token]))
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_tune_leaks_the_storage_password_nowhere(tmp_path, backend, xb):
    token = "Tk" + secrets.token_hex(8)
    storages = {label: (url, forms) for label, url, forms in _storages(tmp_path, token)}
    if backend not in storages:
        pytest.skip("set XRAYBENCH_TEST_POSTGRES=postgresql://... to run against PostgreSQL")
    url, forms = storages[backend]
    data = make_kaggle_tree(tmp_path / "data")
    env = {"XRAYBENCH_RESULTS": str(tmp_path / "results"), "XRAYBENCH_CACHE": str(tmp_path / "cache"),
           "XRAYBENCH_FALLBACK_RESULTS": str(tmp_path / "fallback")}
    study = f"leak-{token}"[:20]
    # The commands that open the storage run as processes: Optuna logs through a handler of its own, on
    # the stderr of the moment it was first set up, not this call's. The rest run here (warnings and logs in err).
    tune = xb.process("tune", "--model", "logreg_pixels", "--data", str(data), "--image-size", "16", "--param", "side=16",
               "--trials", "2", "--sampler", "random", "--storage", url, "--study", study, env=env)
    assert tune.code == 0, tune.out[-3000:] + tune.err[-3000:]
    outputs = {"tune": tune}
    for fmt in ("markdown", "json", "csv"):
        outputs[f"leaderboard {fmt}"] = xb("leaderboard", "--format", fmt, env=env)
    outputs["studies"] = xb.process("studies", "--storage", url, env=env)
    outputs["tune --show"] = xb.process("tune", "--show", study, "--storage", url, env=env)
    outputs["report"] = xb("report", "--output", str(tmp_path / "report" / "report.html"), env=env)
    for name, proc in outputs.items():
        assert proc.code == 0, (name, proc.out[-2000:], proc.err[-2000:])
        for form in forms:
            assert form not in proc.out and form not in proc.err, (name, form)

    files = [p for p in tmp_path.rglob("*") if p.is_file() and "data" not in p.relative_to(tmp_path).parts[:1]]
    assert any(p.suffix == ".sqlite3" for p in files) == (backend == "sqlite")
    assert any(p.name == "report.html" for p in files) and any(p.parent.name == "runs" for p in files)
    for path in files:
        raw = path.read_bytes()
        for form in forms:
            assert form.encode() not in raw, (str(path), form)
    assert not (tmp_path / "fallback").exists()
    assert not any(form in _study_texts(url, study) for form in forms)

    # Not vacuous: the command was recorded and published, masked, with the rest of it intact.
    runs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")
            if not p.name.endswith(".scores.json") and not p.name.startswith(".")]
    assert len(runs) == 1 and "--storage" in runs[0]["command"] and "***" in runs[0]["command"]
    assert "--trials 2" in runs[0]["command"] and runs[0]["tags"]["storage"].count("***") >= 1
    board = json.loads(outputs["leaderboard json"].out)["rows"]
    assert board[0]["commands"] == [runs[0]["command"]]
    assert "optuna-dashboard" in outputs["tune --show"].out and "***" in outputs["tune --show"].out


def test_an_old_record_holding_a_secret_is_masked_when_published(tmp_path):
    """Records written before masking existed still hold the URL; the leaderboard masks at render."""
    from recordfactory import make_record

    from xraybench import leaderboard as lb
    from xraybench.results import ResultStore, _atomic_write

    store = ResultStore(tmp_path)
    record, scores = make_record("old")
    record["command"] = "xraybench tune --storage postgresql://alice:Hunter2Old@db/xb --param api_token=T0kenOld"
    record["reason"] = "cannot open s3://bob:ReasonPw@bucket/x"
    record["data"] = {**record["data"], "source": "s3://carol:SourcePw@bucket/xray"}
    _atomic_write(store.runs / f"{record['run_id']}.json", {"schema": 1, **record})  # as an old version wrote it
    saved, _ = make_record("new", status="error")
    saved.update(reason="failed: token=ReasonTok", traceback="Traceback ...\n  url https://dave:TbPw@host/x")
    store.save(saved)
    assert not {"ReasonTok", "TbPw"} & set(re.findall(r"\w+", (store.runs / f"{saved['run_id']}.json").read_text()))
    summaries = list(store.summaries())
    rows = lb.build_rows(summaries)
    published = lb.render_markdown(rows, [], "t") + lb.render_json(rows, []) + lb.render_csv(rows) + repr(summaries)
    assert "Hunter2Old" not in published and "T0kenOld" not in published
    assert "ReasonPw" not in repr(summaries) and "SourcePw" not in repr(summaries)
    assert "postgresql://alice:***@db/xb" in published
    assert "Hunter2Old" not in (store.runs / ".index.json").read_text()
