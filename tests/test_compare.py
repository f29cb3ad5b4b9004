"""compare.py: scores with classes absent from the ground truth left out, confidence intervals over
subjects against an independent bootstrap, the mean and sd over seeds, and the paired comparison of
two run folders (python compare.py RUN_A RUN_B). Run folders are written here as train.py leaves
them (config.json, folds/*.json) with known predictions; trained demo runs are compared in
tests/test_train.py (test_demo_learns_and_shuffled_labels_fall_to_chance)."""
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_1samp
from sklearn.metrics import f1_score, precision_score, recall_score

import compare

CLASSES = ["happiness", "disgust", "repression", "surprise", "others"]


def write_run(run, rows, classes=CLASSES, seed=0, epochs=None, summarize=True, **config):
    """A run folder as train.py leaves it: rows (subject, label, prediction) as class indices;
    with `epochs`, each fold also gets that many copies of its predictions as epoch_predictions.
    Returns its summary; with summarize=False only the folds are written (a seed of a multi-seed
    folder that compare.summarize will summarize)."""
    os.makedirs(os.path.join(run, "folds"))
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(dict(classes=classes, seed=seed, epochs=epochs or 1) | config, f)
    for s in sorted({r[0] for r in rows}):
        mine = [dict(dataset="CASME", subject=s, filename=f"EP{k:02d}", onset=1, label=int(l),
                     prediction=int(p)) for k, (_, l, p) in enumerate(r for r in rows if r[0] == s)]
        fold = dict(subject=s, seconds=1.0, train_loss=[1.0] * (epochs or 1), rows=mine)
        if epochs:
            fold["epoch_predictions"] = [[r["prediction"] for r in mine]] * epochs
        with open(os.path.join(run, "folds", f"{s}.json"), "w") as f:
            json.dump(fold, f)
    return compare.summarize(run, log=lambda *_: None) if summarize else None


def casme_sized(seed, right=0.7):
    """246 samples of 26 subjects, 5 classes (CASME II's 5-class set), `right` of them correct."""
    rng = np.random.default_rng(seed)
    subjects = np.concatenate([np.arange(26), rng.integers(0, 26, 246 - 26)])
    y = rng.integers(0, 5, 246)
    p = np.where(rng.random(246) < right, y, rng.integers(0, 5, 246))
    return [(f"{s:02d}", l, q) for s, l, q in zip(subjects, y, p)]


def independent_bootstrap(predictions_csv, resamples=2000, seed=12345):
    """accuracy, UF1 and UAR over resamples of the subjects of a predictions.csv, with numpy
    only (own draws, own metric code): the distribution compare's ci95 should be the 2.5 and
    97.5 percentiles of."""
    p = pd.read_csv(predictions_csv, dtype={"subject": str})
    groups = [(g.label.to_numpy(), g.prediction.to_numpy()) for _, g in p.groupby("subject")]
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("accuracy", "uf1", "uar")}
    for _ in range(resamples):
        pick = rng.integers(0, len(groups), len(groups))
        y = np.concatenate([groups[i][0] for i in pick])
        q = np.concatenate([groups[i][1] for i in pick])
        f1, rec = [], []
        for c in np.unique(y):   # the classes present in this resample's ground truth
            tp, fp, fn = np.sum((y == c) & (q == c)), np.sum((y != c) & (q == c)), np.sum((y == c) & (q != c))
            f1.append(2 * tp / (2 * tp + fp + fn))
            rec.append(tp / (tp + fn))
        out["accuracy"].append(np.mean(y == q))
        out["uf1"].append(np.mean(f1))
        out["uar"].append(np.mean(rec))
    return {k: np.array(v) for k, v in out.items()}


def assert_ci_agrees(summary, predictions_csv, tol=0.02):
    """ci95 holds the point estimate, and its ends sit at the 2.5 / 97.5 % ranks of an
    independent bootstrap: a rank, not a value, so discrete distributions (few subjects) pass
    too; tol 0.02 is 4 standard errors of two 2,000-resample estimates of a 2.5 % rank."""
    dist = independent_bootstrap(predictions_csv)
    for k in ("accuracy", "uf1", "uar"):
        lo, hi = summary["ci95"][k]
        assert lo <= summary[k] <= hi, (k, lo, summary[k], hi)
        d = dist[k]
        for end, q in ((lo, 0.025), (hi, 0.975)):
            assert np.mean(d < end - 1e-9) <= q + tol and np.mean(d <= end + 1e-9) >= q - tol, (k, end, q)


def test_classes_absent_from_the_ground_truth_are_left_out():
    three = ["negative", "positive", "surprise"]
    y = [0, 0, 1, 1, 1]
    m = compare.metrics(y, y, three)   # perfect on the two classes present
    assert m["uf1"] == m["uar"] == m["author_f1"] == m["accuracy"] == m["weighted_f1"] == 1.0
    assert m["absent_classes"] == ["surprise"]
    assert list(m["per_class"]) == three and m["per_class"]["surprise"]["support"] == 0
    # a prediction of the absent class is still an error of the true class
    p = [0, 2, 1, 1, 0]
    m = compare.metrics(y, p, three)
    present = [0, 1]
    assert m["uf1"] == pytest.approx(f1_score(y, p, labels=present, average="macro"))
    assert m["uar"] == pytest.approx(recall_score(y, p, labels=present, average="macro"))
    P = precision_score(y, p, labels=present, average="macro")
    R = recall_score(y, p, labels=present, average="macro")
    assert m["author_f1"] == pytest.approx(2 * P * R / (P + R))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, p, average="weighted"))


def test_scores_agree_with_sklearn_and_are_vectorised():
    rows = casme_sized(0)
    y, p = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    m = compare.metrics(y, p, CLASSES)
    assert m["uf1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["uar"] == pytest.approx(recall_score(y, p, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, p, average="weighted"))
    assert m["absent_classes"] == []
    cm = compare.confusions(pd.DataFrame(dict(subject=[r[0] for r in rows], label=y, prediction=p)), 5,
                            sorted({r[0] for r in rows}))
    stacked = compare.scores(np.stack([cm.sum(0), cm[:3].sum(0)]))   # two pooled sets at once
    assert stacked["uf1"][0] == pytest.approx(m["uf1"])
    first3 = np.isin([r[0] for r in rows], ["00", "01", "02"])
    assert stacked["uar"][1] == pytest.approx(compare.metrics(y[first3], p[first3], CLASSES)["uar"])


def test_absent_class_summary_curves_and_authors_protocol(tmp_path, capsys):
    rows = [(s, l, l) for s in ("01", "02", "03") for l in (0, 1, 1)]   # no "surprise" at all
    m = write_run(str(tmp_path / "run"), rows, classes=["negative", "positive", "surprise"], epochs=2)
    assert m["uf1"] == m["uar"] == m["author_f1"] == 1.0 and m["absent_classes"] == ["surprise"]
    assert [e["uf1"] for e in m["per_epoch"]] == [1.0, 1.0] and m["authors_protocol"]["uf1"] == 1.0
    assert m["ci95"]["uf1"] == [1.0, 1.0]
    compare.summarize(str(tmp_path / "run"))
    assert "left out of UF1, UAR and authors' F1: surprise" in capsys.readouterr().out


def test_ci95_agrees_with_an_independent_bootstrap_over_subjects(tmp_path, capsys):
    run = str(tmp_path / "run")
    m = write_run(run, casme_sized(1))
    assert_ci_agrees(m, os.path.join(run, "predictions.csv"))
    lo, hi = m["ci95"]["uf1"]
    assert 0.05 < hi - lo < 0.3   # a real interval, about as wide as 26 subjects give
    compare.summarize(run)
    assert f"UF1 {m['uf1']:.4f} [{lo:.4f}, {hi:.4f}]" in capsys.readouterr().out
    # the same folder gives the same interval (fixed resampling seed)
    assert compare.summarize(run, log=lambda *_: None)["ci95"] == m["ci95"]


def test_composite_gets_a_ci_per_dataset(tmp_path):
    rows = [(s, l, p) for s, l, p in casme_sized(2)]
    run = str(tmp_path / "run")
    write_run(run, rows)
    for f in os.listdir(os.path.join(run, "folds")):   # half the subjects become SAMM's
        path = os.path.join(run, "folds", f)
        fold = json.load(open(path))
        for r in fold["rows"]:
            r["dataset"] = "SAMM" if int(r["subject"]) % 2 else "CASME"
        json.dump(fold, open(path, "w"))
    m = compare.summarize(run, log=lambda *_: None)
    for d in ("CASME", "SAMM"):
        v = m["per_dataset"][d]
        assert v["ci95"]["uf1"][0] <= v["uf1"] <= v["ci95"]["uf1"][1]
        assert v["ci95"] != m["ci95"]


def test_compare_a_run_with_itself_and_with_a_better_one(tmp_path, capsys):
    rows = casme_sized(3, right=0.5)
    write_run(str(tmp_path / "a"), rows)
    better = [(s, l, l if k % 3 else p) for k, (s, l, p) in enumerate(rows)]   # two thirds made right
    write_run(str(tmp_path / "b"), better)
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "a"), "--json", str(tmp_path / "s.json")]) == 0
    same = json.loads((tmp_path / "s.json").read_text())
    for k in ("accuracy", "uf1", "uar"):
        m = same["metrics"][k]
        assert m["difference"] == 0 and m["ci95"] == [0, 0] and m["p_value"] == 1
    assert same["mcnemar"] == dict(right_only_a=0, right_only_b=0, p_value=1.0, test=same["mcnemar"]["test"])
    capsys.readouterr()
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(tmp_path / "ab.json")]) == 0
    out = capsys.readouterr().out
    ab = json.loads((tmp_path / "ab.json").read_text())
    sa, sb = (json.loads((tmp_path / r / "summary.json").read_text()) for r in "ab")
    for k in ("accuracy", "uf1", "uar"):
        m = ab["metrics"][k]
        assert m["difference"] == pytest.approx(sb[k] - sa[k])
        assert m["ci95"][0] > 0 and m["p_value"] < 0.01
    right_a = np.array([l == p for _, l, p in rows])
    right_b = np.array([l == p for _, l, p in better])
    assert ab["mcnemar"]["right_only_b"] == np.sum(right_b & ~right_a) and ab["mcnemar"]["right_only_a"] == 0
    assert ab["mcnemar"]["p_value"] < 1e-6
    lines = [line for line in out.splitlines() if line.strip().startswith(("accuracy", "UF1", "UAR"))]
    assert len(lines) == 3   # one line a metric


def test_runs_over_other_samples_or_labels_are_refused(tmp_path, capsys):
    rows = casme_sized(4)
    write_run(str(tmp_path / "a"), rows)
    write_run(str(tmp_path / "fewer"), rows[:-1])
    write_run(str(tmp_path / "relabelled"), [(s, (l + 1) % 5 if k == 0 else l, p)
                                              for k, (s, l, p) in enumerate(rows)])
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "fewer")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not over the same samples: 1 only in" in err and "@1" in err, err
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "relabelled")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "differently" in err, err
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_multi_seed_folders_summarized_and_compared_seed_by_seed(tmp_path, capsys):
    base = casme_sized(5, right=0.5)
    for s in (0, 1, 2):   # B is A with a seed-dependent share of errors fixed
        rng = np.random.default_rng(s)
        a = [(su, l, l if rng.random() < 0.1 else p) for su, l, p in base]
        write_run(str(tmp_path / "A" / f"seed{s}"), a, seed=s, epochs=2, summarize=False)
        b = [(su, l, l if rng.random() < 0.3 else p) for su, l, p in a]
        write_run(str(tmp_path / "B" / f"seed{s}"), b, seed=s, epochs=2)
    write_run(str(tmp_path / "B" / "seed7"), base, seed=7, epochs=2)   # not in A: left out
    top = compare.summarize(str(tmp_path / "A"), log=lambda *_: None)   # each seed, then the top
    own = [json.loads((tmp_path / "A" / f"seed{s}" / "summary.json").read_text()) for s in (0, 1, 2)]
    assert top["seeds"] == [0, 1, 2] and set(top["per_seed"]) == {"0", "1", "2"}
    for k in compare.HEADLINE:
        assert top["mean"][k] == pytest.approx(np.mean([m[k] for m in own]))
        assert top["sd"][k] == pytest.approx(np.std([m[k] for m in own], ddof=1))
    ap = top["authors_protocol"]["mean"]["uf1"]
    assert ap == pytest.approx(np.mean([m["authors_protocol"]["uf1"] for m in own]))
    assert (tmp_path / "A" / "learning_curves.png").is_file()
    capsys.readouterr()
    assert compare.main([str(tmp_path / "A"), str(tmp_path / "B"), "--json", str(tmp_path / "c.json")]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["seeds"] == [0, 1, 2] and set(c["per_seed"]) == {"0", "1", "2"}
    for k in ("accuracy", "uf1", "uar"):
        b = [json.loads((tmp_path / "B" / f"seed{s}" / "summary.json").read_text()) for s in (0, 1, 2)]
        d = [b[s][k] - own[s][k] for s in (0, 1, 2)]
        o = c["over_seeds"][k]
        assert o["mean"] == pytest.approx(np.mean(d)) and o["sd"] == pytest.approx(np.std(d, ddof=1))
        assert o["p_value"] == pytest.approx(ttest_1samp(d, 0).pvalue)
        assert all(c["per_seed"][str(s)]["metrics"][k]["p_value"] < 0.01 for s in (0, 1, 2))
    out = capsys.readouterr().out
    assert "paired t-test over seeds" in out
    # seeds of one folder must share their settings
    shutil.rmtree(tmp_path / "B" / "seed7")
    write_run(str(tmp_path / "B" / "seed9"), base, seed=9, epochs=3)
    with pytest.raises(compare.dl.DataError, match="epochs=3"):
        compare.summarize_seeds(str(tmp_path / "B"))
