"""metrics.py: scores with classes absent from the ground truth left out (against sklearn), the
bootstrap interval over subjects and the paired bootstrap against a plain numpy + sklearn loop over
the same resamples, McNemar's counts, and the t-test over seeds."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, ttest_1samp
from sklearn.metrics import f1_score, precision_score, recall_score

import metrics

CLASSES = ["happiness", "disgust", "repression", "surprise", "others"]


def casme_sized(seed, right=0.7):
    """246 samples of 26 subjects, 5 classes (CASME II's 5-class set), `right` of them correct:
    [(subject, label, prediction)]."""
    rng = np.random.default_rng(seed)
    subjects = np.concatenate([np.arange(26), rng.integers(0, 26, 246 - 26)])
    y = rng.integers(0, 5, 246)
    p = np.where(rng.random(246) < right, y, rng.integers(0, 5, 246))
    return [(f"{s:02d}", l, q) for s, l, q in zip(subjects, y, p)]


def table(rows):
    return pd.DataFrame(rows, columns=["subject", "label", "prediction"])


def plain_scores(y, p):
    """accuracy, UF1 and UAR written out class by class, over the classes present in y (MEGC's
    rule): metrics' own code is vectorised over confusion matrices, this is not."""
    f1, recall = [], []
    for c in np.unique(y):
        tp, fp, fn = np.sum((y == c) & (p == c)), np.sum((y != c) & (p == c)), np.sum((y == c) & (p != c))
        f1.append(2 * tp / (2 * tp + fp + fn))
        recall.append(tp / (tp + fn))
    return dict(accuracy=np.mean(y == p), uf1=np.mean(f1), uar=np.mean(recall))


def loop_bootstrap(pred, statistic):
    """The percentile bootstrap over subjects as a plain loop: the subjects drawn as scipy's
    bootstrap draws them with metrics' generator (one integers(0, n, (resamples, n)) call),
    statistic({column: array} of the resample) computed one resample at a time, then numpy's percentiles."""
    subjects = sorted(set(pred.subject))
    groups = [{c: pred[c].to_numpy()[pred.subject == s] for c in pred if c != "subject"} for s in subjects]
    draws = np.random.default_rng(metrics.BOOT_SEED).integers(0, len(subjects),
                                                              (metrics.RESAMPLES, len(subjects)))
    values = [statistic({c: np.concatenate([groups[i][c] for i in d]) for c in groups[0]}) for d in draws]
    return {k: np.percentile([v[k] for v in values], [2.5, 97.5]) for k in values[0]}, values


def assert_ci_is_the_loop(summary, predictions_csv):
    """summary.json's ci95 is the plain loop's interval over the subjects of its predictions.csv."""
    p = pd.read_csv(predictions_csv, dtype={"subject": str})[["subject", "label", "prediction"]]
    want, _ = loop_bootstrap(p, lambda t: plain_scores(t["label"], t["prediction"]))
    for k in ("accuracy", "uf1", "uar"):
        assert summary["ci95"][k] == pytest.approx(want[k], abs=1e-12), k


def test_classes_absent_from_the_ground_truth_are_left_out():
    three = ["negative", "positive", "surprise"]
    y = [0, 0, 1, 1, 1]
    m = metrics.metrics(y, y, three)   # perfect on the two classes present
    assert m["uf1"] == m["uar"] == m["author_f1"] == m["accuracy"] == m["weighted_f1"] == 1.0
    assert m["absent_classes"] == ["surprise"]
    assert list(m["per_class"]) == three and m["per_class"]["surprise"]["support"] == 0
    # a prediction of the absent class is still an error of the true class
    p = [0, 2, 1, 1, 0]
    m = metrics.metrics(y, p, three)
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
    m = metrics.metrics(y, p, CLASSES)
    assert m["uf1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["uar"] == pytest.approx(recall_score(y, p, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, p, average="weighted"))
    assert m["absent_classes"] == []
    cm = metrics.confusions(table(rows), 5, sorted({r[0] for r in rows}))
    stacked = metrics.scores(np.stack([cm.sum(0), cm[:3].sum(0)]))   # two pooled sets at once
    assert stacked["uf1"][0] == pytest.approx(m["uf1"])
    first3 = np.isin([r[0] for r in rows], ["00", "01", "02"])
    assert stacked["uar"][1] == pytest.approx(metrics.metrics(y[first3], p[first3], CLASSES)["uar"])


def test_ci95_is_the_percentile_interval_of_the_subject_bootstrap():
    # 8 subjects, so the loop stays quick; some resamples lack a class, which the MEGC rule leaves out
    pred = table([r for r in casme_sized(1, right=0.6) if int(r[0]) < 8])
    want, _ = loop_bootstrap(pred, lambda t: plain_scores(t["label"], t["prediction"]))
    got = metrics.ci95(pred, 5)
    for k in ("accuracy", "uf1", "uar"):
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
        assert want[k][1] - want[k][0] > 0.05   # a real interval, not a degenerate one
    assert metrics.ci95(pred[pred.subject == "00"], 5) is None   # one subject: no interval


def test_paired_bootstrap_and_mcnemar_against_a_loop():
    rows = [r for r in casme_sized(2, right=0.5) if int(r[0]) < 8]
    a = table(rows)
    b = a.assign(prediction=[l if k % 3 else p for k, (_, l, p) in enumerate(rows)])   # a third set right
    both = a.assign(prediction_b=b.prediction)

    def difference(t):
        sa = plain_scores(t["label"], t["prediction"])
        sb = plain_scores(t["label"], t["prediction_b"])
        return {k: sb[k] - sa[k] for k in sa}
    want, values = loop_bootstrap(both, difference)
    got = metrics.paired(a, b, 5)
    assert got["samples"] == len(rows) and got["subjects"] == 8
    for k in ("accuracy", "uf1", "uar"):
        m = got["metrics"][k]
        d = np.array([v[k] for v in values])
        assert m["difference"] == pytest.approx(difference({c: both[c].to_numpy() for c in both})[k])
        assert m["ci95"] == pytest.approx(want[k], abs=1e-12)
        assert m["p_value"] == pytest.approx(min(1, 2 * (min((d <= 0).sum(), (d >= 0).sum()) + 1) / 2001))
        assert m["ci95"][0] > 0 and m["p_value"] < 0.01
    right_a, right_b = (a.label == a.prediction).to_numpy(), (b.label == b.prediction).to_numpy()
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    assert only_a == 0 and only_b > 10   # b only fixes errors
    assert got["mcnemar"]["right_only_a"] == only_a and got["mcnemar"]["right_only_b"] == only_b
    assert got["mcnemar"]["p_value"] == pytest.approx(2 * 0.5 ** only_b)   # exact two-sided binomial
    assert got["mcnemar"]["p_value"] == pytest.approx(binomtest(only_b, only_b).pvalue)


def test_a_run_against_itself():
    a = table([r for r in casme_sized(3) if int(r[0]) < 5])
    got = metrics.paired(a, a, 5)
    for m in got["metrics"].values():
        assert m["difference"] == 0 and m["ci95"] == [0, 0] and m["p_value"] == 1
    assert got["mcnemar"]["right_only_a"] == got["mcnemar"]["right_only_b"] == 0
    assert got["mcnemar"]["p_value"] == 1


def test_seed_test_is_scipys_t_test_and_mean_sd():
    d = [0.05, 0.02, 0.08]
    t = metrics.seed_test(d)
    assert t["mean"] == pytest.approx(0.05) and t["sd"] == pytest.approx(0.03)   # ddof 1
    assert t["p_value"] == pytest.approx(ttest_1samp(d, 0).pvalue)
    mean, sd = metrics.mean_sd([dict(x=1.0), dict(x=3.0)], ["x"])
    assert mean == dict(x=2.0) and sd["x"] == pytest.approx(np.sqrt(2))
    assert metrics.mean_sd([dict(x=1.0)], ["x"]) == (dict(x=1.0), dict(x=None))   # one seed: no sd


def test_seed_test_without_spread_is_undefined_not_p_0():
    same = metrics.seed_test([0.1, 0.1, 0.1])
    assert same["p_value"] is None and same["sd"] == 0 and same["note"] == metrics.SAME
    assert metrics.seed_test([0.3 - 0.2, 0.2 - 0.1, 0.1])["p_value"] is None   # equal up to rounding
    assert metrics.seed_test([0.0, 0.0])["p_value"] == 1.0   # no difference on any seed
