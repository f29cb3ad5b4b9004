"""runfolder.py: the fold file written and read back, config.json refusing other settings and other
data, and the summaries (classes absent from the ground truth, intervals, composites, seeds) of run
folders written here as train.py leaves them, with known predictions. Trained run folders are
tested in tests/test_train.py and tests/test_train_runs.py."""
import json
import os
import shutil
import types

import numpy as np
import pandas as pd
import pytest

import datasets
import metrics
import runfolder
from test_metrics import casme_sized

CLASSES = ["happiness", "disgust", "repression", "surprise", "others"]


def write_run(run, rows, classes=CLASSES, seed=0, epochs=None, summarize=True, dataset=lambda s: "CASME",
              **config):
    """A run folder as train.py leaves it: rows (subject, label, prediction) as class indices,
    each fold with that many copies of its predictions as epoch_predictions (epochs, default 1);
    dataset(subject) names each subject's dataset.
    Returns its summary; with summarize=False only the folds are written (a seed of a multi-seed
    folder that runfolder.summarize will summarize)."""
    os.makedirs(os.path.join(run, "folds"))
    subjects = sorted({r[0] for r in rows})
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(dict(classes=classes, seed=seed, epochs=epochs or 1, protocol="loso", folds=subjects)
                  | config, f)
    for s in subjects:
        mine = [dict(dataset=dataset(s), subject=s, filename=f"EP{k:02d}", onset=1, label=int(l),
                     prediction=int(p)) for k, (_, l, p) in enumerate(r for r in rows if r[0] == s)]
        runfolder.write_fold(run, "subject", s, seconds=1.0, train_loss=[1.0] * (epochs or 1), rows=mine,
                             optimizer_start_step=0,
                             epoch_predictions=[[r["prediction"] for r in mine]] * (epochs or 1))
    return runfolder.summarize(run, log=lambda *_: None) if summarize else None


def test_fold_file_round_trip_and_damage(tmp_path):
    data = types.SimpleNamespace(datasets=np.array(["CASME"] * 3), subjects=np.array(["01", "01", "02"]),
                                 filenames=np.array(["a", "b", "c"]), onsets=np.array([1, 5, 9]),
                                 y=np.array([0, 1, 1]))
    probs = np.array([[0.7, 0.3], [0.6, 0.4], [0.1234567, 0.8765433]])
    rows = runfolder.prediction_rows(data, [0, 2], probs[[0, 2]], ["neg", "pos"])
    assert rows[1] == dict(dataset="CASME", subject="02", filename="c", onset=9, label=1, prediction=1,
                           p_neg=0.123457, p_pos=0.876543)
    fold = runfolder.write_fold(str(tmp_path), "subject", "01", seconds=2.5, train_loss=[0.9, 0.4], rows=rows,
                                optimizer_start_step=4, epoch_predictions=[[1, 1], [0, 1]])
    path = runfolder.fold_path(str(tmp_path), "01")
    assert runfolder.read_fold(path) == (fold, None) and fold["subject"] == "01"
    assert os.listdir(tmp_path / "folds") == ["01.json"]   # written atomically: no temp file left
    assert runfolder.read_fold(runfolder.fold_path(str(tmp_path), "02")) == (None, None)   # not trained yet
    for damage, why in ((b"", "Expecting value: line 1 column 1 (char 0)"),
                        (b'{"subject": "01", "ro', "Unterminated string starting at: line 1 column 19"),
                        (b'{"subject": "01"}', "not a fold file of train.py"),
                        (b"[1, 2]", "not a fold file of train.py"), (b"\xff", "'utf-8' codec can't decode")):
        with open(path, "wb") as f:
            f.write(damage)
        fold, got = runfolder.read_fold(path)   # train.py trains it again; summarize names it
        assert fold is None and got.startswith(why), (damage, got)


def test_log_prints_appends_and_closes(tmp_path, capsys):
    path = str(tmp_path / "train.log")
    for line in ("one", "two"):
        with runfolder.Log(path) as log:
            log(line)
        assert log.f.closed
    assert open(path).read() == "one\ntwo\n" and capsys.readouterr().out == "one\ntwo\n"


def test_open_run_refuses_other_settings_and_other_data(tmp_path):
    run = str(tmp_path / "run")
    config = dict(epochs=1, samples={"01/a@1": "label=0 apex=3 frames=aa",
                                     "01/b@1": "label=1 apex=2 frames=bb"})
    assert runfolder.open_run(run, config) == run and os.path.isdir(os.path.join(run, "folds"))
    assert runfolder.open_run(run, config) == run   # the same config: resumed
    # nothing trained in it yet: other settings set it up again (a retry after an early failure)
    assert runfolder.open_run(run, config | dict(epochs=2)) == run \
        and runfolder.read_config(run)["epochs"] == 2
    assert runfolder.open_run(run, config) == run and runfolder.read_config(run) == config
    # once a fold file is there (even one that cannot be read), other settings and data are refused
    open(os.path.join(run, "folds", "01.json"), "w").close()
    with pytest.raises(datasets.DataError, match="was made with epochs=1, this run has 2"):
        runfolder.open_run(run, config | dict(epochs=2))
    other = {"01/a@1": "label=0 apex=4 frames=cc", "01/c@1": "label=1 apex=2 frames=bb"}
    with pytest.raises(datasets.DataError) as e:
        runfolder.open_run(run, config | dict(samples=other))
    assert str(e.value) == (f"{run} was trained on other data (3 samples changed: 01/a@1 (apex/frames), "
                            "01/b@1 (removed), 01/c@1 (added)): use --new or another --weight_save_path")
    assert runfolder.open_run(run, config | dict(epochs=2), new=True) == run + "_2"
    assert runfolder.open_run(run, config | dict(epochs=3), new=True) == run + "_3"


def test_absent_class_summary_curves_and_authors_protocol(tmp_path, capsys):
    rows = [(s, l, l) for s in ("01", "02", "03") for l in (0, 1, 1)]   # no "surprise" at all
    m = write_run(str(tmp_path / "run"), rows, classes=["negative", "positive", "surprise"], epochs=2)
    assert m["uf1"] == m["uar"] == m["author_f1"] == 1.0 and m["absent_classes"] == ["surprise"]
    assert [e["uf1"] for e in m["per_epoch"]] == [1.0, 1.0] and m["authors_protocol"]["uf1"] == 1.0
    assert m["ci95"]["uf1"] == [1.0, 1.0]
    runfolder.summarize(str(tmp_path / "run"))
    assert "left out of UF1, UAR and authors' F1: surprise" in capsys.readouterr().out


def test_summary_interval_is_the_bootstrap_over_the_runs_subjects(tmp_path, capsys):
    run = str(tmp_path / "run")
    m = write_run(run, casme_sized(1))
    pred = pd.read_csv(os.path.join(run, "predictions.csv"), dtype={"subject": str})
    index = {c: k for k, c in enumerate(CLASSES)}
    pred = pred.assign(label=pred.label.map(index), prediction=pred.prediction.map(index))
    want = metrics.ci95(pred, 5)   # checked against a plain loop in tests/test_metrics.py
    assert {k: m["ci95"][k] for k in want} == want and "26 subjects" in m["ci95"]["note"]
    lo, hi = m["ci95"]["uf1"]
    assert lo < m["uf1"] < hi and 0.05 < hi - lo < 0.3   # about as wide as 26 subjects give
    runfolder.summarize(run)
    assert f"UF1 {m['uf1']:.4f} [{lo:.4f}, {hi:.4f}]" in capsys.readouterr().out
    assert runfolder.summarize(run, log=lambda *_: None)["ci95"] == m["ci95"]   # a fixed resampling seed


def test_composite_gets_scores_and_a_ci_per_dataset(tmp_path):
    run = str(tmp_path / "run")
    write_run(run, casme_sized(2))
    for f in os.listdir(os.path.join(run, "folds")):   # half the subjects become SAMM's
        path = os.path.join(run, "folds", f)
        fold = json.load(open(path))
        for r in fold["rows"]:
            r["dataset"] = "SAMM" if int(r["subject"]) % 2 else "CASME"
        json.dump(fold, open(path, "w"))
    m = runfolder.summarize(run, log=lambda *_: None)
    pred = pd.read_csv(os.path.join(run, "predictions.csv"), dtype={"subject": str})
    for d in ("CASME", "SAMM"):
        v, g = m["per_dataset"][d], pred[pred.dataset == d]
        assert v["n"] == len(g) > 100 and v["accuracy"] == pytest.approx((g.label == g.prediction).mean())
        assert v["ci95"]["uf1"][0] <= v["uf1"] <= v["ci95"]["uf1"][1] and v["ci95"] != m["ci95"]


def test_composite_pooled_and_per_dataset_scores_by_hand(tmp_path):
    classes = ["negative", "positive", "surprise"]
    rows = {"casme2_01": [("CASME", 0, 0), ("CASME", 1, 1), ("CASME", 2, 2)],
            "samm_006": [("SAMM", 0, 0), ("SAMM", 1, 0), ("SAMM", 2, 0)]}
    (tmp_path / "folds").mkdir()
    config = dict(classes=classes, protocol="loso", folds=list(rows))
    (tmp_path / "config.json").write_text(json.dumps(config))
    for subject, rs in rows.items():
        runfolder.write_fold(str(tmp_path), "subject", subject, 1.0, [1.0],
                             [dict(dataset=d, subject=subject, filename=f"c{i}", onset=1, label=l,
                                   prediction=p) for i, (d, l, p) in enumerate(rs)],
                             0, [[p for _, _, p in rs]])
    m = runfolder.summarize(str(tmp_path), log=lambda *_: None)
    assert m["per_dataset"]["CASME"]["uf1"] == 1.0 and m["per_dataset"]["CASME"]["n"] == 3
    samm = m["per_dataset"]["SAMM"]
    assert samm["uar"] == pytest.approx(1 / 3) and samm["uf1"] == pytest.approx((2 * 1 / 4) / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # pooled UF1: negative P=2/4 R=1 -> 2/3; positive and surprise P=1 R=1/2 -> 2/3
    assert m["uf1"] == pytest.approx(2 / 3)


def test_a_fold_of_another_subject_is_refused(tmp_path):
    run = str(tmp_path / "run")
    write_run(run, casme_sized(3)[:40])
    shutil.copy(runfolder.fold_path(run, "01"), runfolder.fold_path(run, "99"))
    with pytest.raises(datasets.DataError, match=r"99.json: a fold of 99, which is not in this run's data"):
        runfolder.summarize(run)


def test_multi_seed_folder_mean_sd_and_shared_settings(tmp_path):
    base = casme_sized(5, right=0.5)
    for s in (0, 1, 2):
        rng = np.random.default_rng(s)
        rows = [(su, l, l if rng.random() < 0.1 else p) for su, l, p in base]
        write_run(str(tmp_path / "A" / f"seed{s}"), rows, seed=s, epochs=2, summarize=False)
    top = runfolder.summarize(str(tmp_path / "A"), log=lambda *_: None)   # each seed, then the top
    own = [json.loads((tmp_path / "A" / f"seed{s}" / "summary.json").read_text()) for s in (0, 1, 2)]
    assert top["seeds"] == [0, 1, 2] and set(top["per_seed"]) == {"0", "1", "2"}
    for k in metrics.HEADLINE:
        assert top["mean"][k] == pytest.approx(np.mean([m[k] for m in own]))
        assert top["sd"][k] == pytest.approx(np.std([m[k] for m in own], ddof=1))
    ap = top["authors_protocol"]["mean"]["uf1"]
    assert ap == pytest.approx(np.mean([m["authors_protocol"]["uf1"] for m in own]))
    assert (tmp_path / "A" / "learning_curves.png").is_file()
    assert "per_dataset" not in top   # one dataset: its scores are the pooled ones
    # seeds of one folder must share their settings
    write_run(str(tmp_path / "A" / "seed9"), base, seed=9, epochs=3)
    with pytest.raises(datasets.DataError, match="epochs=3"):
        runfolder.summarize_seeds(str(tmp_path / "A"))


def test_multi_seed_composite_gets_each_datasets_mean_sd(tmp_path, capsys):
    base = casme_sized(6, right=0.6)
    samm = lambda subject: "SAMM" if int(subject) % 2 else "CASME"
    for s in (0, 1, 2):
        rng = np.random.default_rng(s)
        rows = [(su, l, l if rng.random() < 0.2 * s else p) for su, l, p in base]
        write_run(str(tmp_path / "A" / f"seed{s}"), rows, seed=s, summarize=False, dataset=samm)
    top = runfolder.summarize(str(tmp_path / "A"))
    own = [json.loads((tmp_path / "A" / f"seed{s}" / "summary.json").read_text()) for s in (0, 1, 2)]
    out = capsys.readouterr().out
    for d in ("CASME", "SAMM"):
        got, each = top["per_dataset"][d], [m["per_dataset"][d] for m in own]
        assert got["n"] == each[0]["n"] == sum(samm(r[0]) == d for r in base)
        per_seed = [top["per_seed"][str(s)]["per_dataset"][d]["uf1"] for s in (0, 1, 2)]
        assert per_seed == [m["uf1"] for m in each]
        for k in metrics.HEADLINE:
            assert got["mean"][k] == pytest.approx(np.mean([m[k] for m in each]))
            assert got["sd"][k] == pytest.approx(np.std([m[k] for m in each], ddof=1)) and got["sd"][k] > 0
        line = next(x for x in out.splitlines() if x.strip().startswith(f"{d} ({got['n']})"))
        assert runfolder.pm(got["mean"]["uf1"], got["sd"]["uf1"]) in line
