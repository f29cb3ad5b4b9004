"""
The statistics of a LOSO run: pooled scores, confidence intervals over subjects, paired tests of
two runs and the test over seeds. Pure functions of labels and predictions, no files.

    import metrics
    m = metrics.metrics(y, p, classes)          # accuracy, UF1, UAR, weighted F1, authors' F1, per class
    metrics.ci95(pred, len(classes))            # {metric: [lo, hi]}: bootstrap over subjects
    metrics.paired(a, b, len(classes))          # B - A: paired bootstrap over subjects, McNemar
    metrics.seed_test(differences)              # t-test of the per-seed differences against 0

Scores pool the predictions of all folds first (MEGC's UF1 / UAR) and, as MEGC's evaluation does,
leave classes absent from the ground truth out of UF1, UAR and the authors' F1; the authors' "F1" is
2PR/(P+R) of the pooled macro precision and recall (their evaluationmatrix.py). Confidence intervals
and paired tests resample subjects (all clips of a drawn subject together): the uncertainty over
which subjects were recorded, for this model and seed. `pred`, `a`, `b`: prediction tables
(pandas) with columns subject, label, prediction (class indices).
"""
import numpy as np
import pandas as pd

HEADLINE = ("accuracy", "uf1", "uar", "weighted_f1", "author_f1")
CI_KEYS = ("accuracy", "uf1", "uar")
NAMES = dict(accuracy="accuracy", uf1="UF1", uar="UAR", weighted_f1="weighted F1", author_f1="authors' F1")
RESAMPLES, BOOT_SEED = 2000, 0   # the bootstrap over subjects: fixed, so a summary is reproducible


def per_class(cm):
    """Precision, recall and F1 of each class of confusion matrices cm[..., true, predicted]
    (0 where undefined, as sklearn's zero_division=0)."""
    cm = np.asarray(cm, dtype=float)
    tp, support, predicted = np.diagonal(cm, axis1=-2, axis2=-1), cm.sum(-1), cm.sum(-2)
    div = lambda a, b: np.divide(a, b, out=np.zeros_like(a), where=b > 0)
    return div(tp, predicted), div(tp, support), div(2 * tp, support + predicted), support


def scores(cm):
    """HEADLINE scores of confusion matrices cm[..., true, predicted]: one pooled matrix, or a
    bootstrap's stack of them (vectorised, so 2,000 resamples cost milliseconds). The means over
    classes take only the classes present in the ground truth, as MEGC's evaluation does: a
    class with no sample would otherwise count as F1 0."""
    precision, recall, f1, support = per_class(cm)
    present = support > 0
    mean = lambda v: (v * present).sum(-1) / present.sum(-1)
    P, R = mean(precision), mean(recall)
    return dict(accuracy=np.diagonal(cm, axis1=-2, axis2=-1).sum(-1) / support.sum(-1), uf1=mean(f1), uar=R,
                weighted_f1=(f1 * support).sum(-1) / support.sum(-1),
                # the authors' evaluationmatrix.py: 2PR/(P+R) of macro precision and recall
                author_f1=np.divide(2 * P * R, P + R, out=np.zeros_like(P), where=P + R > 0))


def metrics(y, p, classes):
    """HEADLINE scores of labels y and predictions p (class indices into `classes`), the classes
    absent from y, and each class's precision, recall, F1 and support."""
    from sklearn.metrics import confusion_matrix
    cm = confusion_matrix(y, p, labels=list(range(len(classes))))
    pc, rc, fc, sc = per_class(cm)
    return {k: float(v) for k, v in scores(cm).items()} | {
        "absent_classes": [c for c, n in zip(classes, sc) if n == 0],   # left out of the means
        "per_class": {c: {"precision": float(pc[k]), "recall": float(rc[k]), "f1": float(fc[k]),
                          "support": int(sc[k])} for k, c in enumerate(classes)},
    }


def confusions(pred, n_classes, subjects):
    """Confusion matrices [subject, true, predicted] of a prediction table, one per subject."""
    s = pd.Index(subjects).get_indexer(pred.subject)
    cm = np.zeros((len(subjects), n_classes, n_classes))
    np.add.at(cm, (s, np.asarray(pred.label, int), np.asarray(pred.prediction, int)), 1)
    return cm


def bootstrap(stat, n):
    """scipy's percentile bootstrap over n subjects: stat(idx) gets the drawn subjects' indices
    (resamples x n, with replacement) and returns an array [statistic, resample]."""
    from scipy.stats import bootstrap
    return bootstrap((np.arange(n),), lambda i, axis=-1: stat(np.moveaxis(i, axis, -1)),
                     n_resamples=RESAMPLES, method="percentile", vectorized=True,
                     rng=np.random.default_rng(BOOT_SEED))


def ci95(pred, n_classes):
    """{metric: [2.5, 97.5 percentile]} of CI_KEYS over bootstrap resamples of the subjects of a
    prediction table (a drawn subject brings all its clips; the metric is recomputed on the pooled
    resample, with the classes present in it); None with fewer than two subjects."""
    subjects = sorted(set(pred.subject))
    if len(subjects) < 2:
        return None
    cm = confusions(pred, n_classes, subjects)
    r = bootstrap(lambda i: np.stack([scores(cm[i].sum(-3))[k] for k in CI_KEYS]), len(subjects))
    return {k: [float(r.confidence_interval.low[j]), float(r.confidence_interval.high[j])]
            for j, k in enumerate(CI_KEYS)}


def mcnemar(right_a, right_b):
    """McNemar's exact test on per-sample correctness (boolean arrays, same samples): a binomial
    test of the discordant pairs; p 1 when there are none."""
    from scipy.stats import binomtest
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    n = only_a + only_b
    return dict(right_only_a=only_a, right_only_b=only_b, test="McNemar exact (binomial, discordant pairs)",
                p_value=float(binomtest(only_b, n).pvalue) if n else 1.0)


def paired(a, b, n_classes):
    """B - A of CI_KEYS with a paired bootstrap over subjects (the same drawn subjects for both
    runs), and McNemar's exact test on per-sample correctness. a, b: prediction tables, same rows."""
    subjects = sorted(set(a.subject))
    ca, cb = confusions(a, n_classes, subjects), confusions(b, n_classes, subjects)
    sa, sb = scores(ca.sum(0)), scores(cb.sum(0))
    out = dict(samples=int(len(a)), subjects=len(subjects), metrics={})
    r = None
    if len(subjects) > 1:
        r = bootstrap(lambda i: np.stack([scores(cb[i].sum(-3))[k] - scores(ca[i].sum(-3))[k]
                                          for k in CI_KEYS]), len(subjects))
    for j, k in enumerate(CI_KEYS):
        m = dict(a=float(sa[k]), b=float(sb[k]), difference=float(sb[k] - sa[k]), ci95=None, p_value=None,
                 test="paired bootstrap over subjects")
        if r is not None:
            d = r.bootstrap_distribution[j]
            m["ci95"] = [float(r.confidence_interval.low[j]), float(r.confidence_interval.high[j])]
            # two-sided, from the bootstrap distribution of the difference: twice the smaller share
            # of resamples on either side of 0 (+1 each, so never 0: the least is 2/(RESAMPLES+1))
            m["p_value"] = min(1.0, 2 * (min((d <= 0).sum(), (d >= 0).sum()) + 1) / (RESAMPLES + 1))
        out["metrics"][k] = m
    out["mcnemar"] = mcnemar((a.label == a.prediction).to_numpy(), (b.label == b.prediction).to_numpy())
    return out


SAME = "every seed differs by the same amount (sd 0): the t-test over seeds is undefined"


def seed_test(d):
    """Mean, sd and the p of a one-sample t-test against 0 of per-seed differences `d`. The seeds
    are independent replications of training and each difference is already paired over the same
    samples, so the test over seeds is one-sample on the differences. No difference on any seed
    gives p 1; the same non-zero difference on every seed has no spread to test against: p None
    and a note, not the p of 0 that t = d / 0 would give."""
    from scipy.stats import ttest_1samp
    d = np.asarray(d, float)
    out = dict(mean=float(d.mean()), sd=float(d.std(ddof=1)), p_value=None,
               test="paired t-test over seeds (one-sample t-test of the per-seed differences)")
    if not d.any():
        out["p_value"] = 1.0
    elif np.ptp(d) <= 1e-12:   # the same up to rounding: scipy would divide by ~0
        out["sd"], out["note"] = 0.0, SAME
    else:
        p = float(ttest_1samp(d, 0).pvalue)
        out["p_value"] = None if np.isnan(p) else p
    return out


def mean_sd(rows, keys):
    """Mean and sample sd (ddof 1; None for one row) of `keys` over dicts."""
    v = {k: np.array([r[k] for r in rows], float) for k in keys}
    return ({k: float(x.mean()) for k, x in v.items()},
            {k: float(x.std(ddof=1)) if len(x) > 1 else None for k, x in v.items()})
