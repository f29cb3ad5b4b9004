"""
Scores of LOSO run folders: the pooled metrics, confidence intervals, curves and plots that train.py
writes into a run folder (`summarize`), the mean and sd over the seeds of a multi-seed folder
(`summarize_seeds`), and a paired comparison of two runs over the same samples.

    python compare.py runs/casme_sssn runs/casme_dssn   # B - A with paired tests, one line a metric
    python compare.py RUN_A RUN_B --json diff.json      # also as JSON (every p-value under p_value)
    python train.py --summarize runs/casme_dssn         # (re)write one run's summary

    import compare
    m = compare.summarize("runs/casme_dssn")             # summary.json's dict
    compare.metrics(y, p, classes)                       # accuracy, UF1, UAR, weighted F1, authors' F1

Metrics pool the predictions of all folds first (MEGC's UF1 / UAR) and, as MEGC's evaluation does,
leave classes absent from the ground truth out of UF1, UAR and the authors' F1; the authors' "F1" is
2PR/(P+R) of the pooled macro precision and recall (their evaluationmatrix.py). Confidence intervals
and paired tests resample subjects (all clips of a drawn subject together): the uncertainty over
which subjects were recorded, for this model and seed. Over seeds, the runs' spread is the sd.
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import pandas as pd

import dataloader as dl
import utils


HEADLINE = ("accuracy", "uf1", "uar", "weighted_f1", "author_f1")
AP_KEYS = ("epoch", "accuracy", "uf1", "uar", "author_f1")   # summary.json's authors_protocol
CI_KEYS = ("accuracy", "uf1", "uar")
RESAMPLES, BOOT_SEED = 2000, 0   # the bootstrap over subjects: fixed, so a summary is reproducible
ABSENT = "not in the ground truth, so left out of UF1, UAR and authors' F1"
NAMES = dict(accuracy="accuracy", uf1="UF1", uar="UAR", weighted_f1="weighted F1", author_f1="authors' F1")


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
    from sklearn.metrics import confusion_matrix
    cm = confusion_matrix(y, p, labels=list(range(len(classes))))
    pc, rc, fc, sc = per_class(cm)
    return {k: float(v) for k, v in scores(cm).items()} | {
        "absent_classes": [c for c, n in zip(classes, sc) if n == 0],   # left out of the means
        "per_class": {c: {"precision": float(pc[k]), "recall": float(rc[k]), "f1": float(fc[k]),
                          "support": int(sc[k])} for k, c in enumerate(classes)},
    }


def read_fold(path, missing_ok=False):
    """A fold file of a run folder as a dict; one line naming it if it cannot be read (None if
    it is missing or, with missing_ok, unreadable: train.py then trains that fold again)."""
    try:
        with open(path, "rb") as f:
            fold = json.loads(f.read())
        if not isinstance(fold, dict) or not isinstance(fold.get("rows"), list):
            raise ValueError("not a fold file of train.py")
        return fold
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if missing_ok:
            return None
        raise dl.DataError(f"{path}: cannot read fold file ({str(e) or 'empty'}); delete it and rerun "
                           f"the run's command to train that fold again") from None


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


def pm(mean, sd, digits=4):
    """'0.7120 +- 0.0200' ('0.7120' without an sd: one seed)."""
    return f"{mean:.{digits}f}" + (f" +- {sd:.{digits}f}" if sd is not None else "")


def with_ci(m, k):
    """'0.7120 [0.6410, 0.7730]' (the interval when the summary has one)."""
    ci = (m.get("ci95") or {}).get(k)
    return f"{m[k]:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def summarize(run, log=print):
    """Pool every fold of a run folder into predictions.csv, summary.json, confusion_matrix.png;
    a multi-seed folder (seed<N>/ run folders): each seed's, then the mean and sd over seeds.
    A fold of a subject (or dataset) that is not in the run's data is refused, never pooled."""
    seeds = seed_folders(run)
    if seeds:
        for folder in seeds.values():
            if any(n.endswith(".json") for n in os.listdir(os.path.join(folder, "folds"))):
                summarize(folder, log)
        return summarize_seeds(run, log)
    with open(os.path.join(run, "config.json")) as f:
        config = json.load(f)
    folds = []
    for name in sorted(os.listdir(os.path.join(run, "folds"))):
        if name.endswith(".json"):
            if "folds" in config and name[:-5] not in config["folds"]:   # (older config.json: no check)
                raise dl.DataError(f"{os.path.join(run, 'folds', name)}: a fold of {name[:-5]}, which is not "
                                   f"in this run's data ({len(config['folds'])} folds): "
                                   "move it out of the folder")
            folds.append(read_fold(os.path.join(run, "folds", name)))
    if not folds:
        raise dl.DataError(f"{run}: no finished folds")
    classes = config["classes"]
    pred = pd.DataFrame([r for fold in folds for r in fold["rows"]])
    m = metrics(pred.label, pred.prediction, classes)
    ci = ci95(pred, len(classes))
    if ci:
        m["ci95"] = ci | {"note": f"2.5 and 97.5 percentiles over {RESAMPLES} bootstrap resamples of the "
                                  f"{pred.subject.nunique()} subjects (seed {BOOT_SEED}): uncertainty over "
                                  f"subjects for this model and seed, not over seeds or datasets"}
    m["per_subject"] = {s: {"n": int(len(g)), "accuracy": float((g.label == g.prediction).mean())}
                        for s, g in pred.groupby("subject")}
    if pred.dataset.nunique() > 1:   # the MEGC composite is also scored per dataset
        m["per_dataset"] = {d: {k: v for k, v in metrics(g.label, g.prediction, classes).items()
                                if k != "per_class"}
                            | {"n": int(len(g)), "ci95": ci95(g, len(classes))}
                            for d, g in pred.groupby("dataset")}
    m["folds"] = len(folds)
    m["samples"] = int(len(pred))
    m["seconds"] = round(sum(fold["seconds"] for fold in folds), 1)
    m["config"] = config
    out = pred.assign(label=pred.label.map(classes.__getitem__),
                      prediction=pred.prediction.map(classes.__getitem__))
    curves = epoch_curves(folds, classes)
    if curves:
        m["per_epoch"] = curves
        best = max(curves, key=lambda e: e["author_f1"])   # max keeps the earliest of ties
        m["authors_protocol"] = {k: best[k] for k in AP_KEYS} | {
            "note": "epoch chosen by the best pooled authors' F1 ON THE TEST SUBJECTS, as the authors did: "
                    "for comparison with the paper only; the headline figures are the last epoch's"}
    utils.atomic_write(os.path.join(run, "predictions.csv"), lambda f: out.to_csv(f, index=False))
    utils.atomic_write(os.path.join(run, "summary.json"), lambda f: f.write(json.dumps(m, indent=2).encode()))
    plot_confusion(pred.label, pred.prediction, classes, os.path.join(run, "confusion_matrix.png"))
    protocol = config.get("protocol", "loso")
    log(f"\n{protocol.upper()} over {m['folds']} {'datasets' if protocol == 'lodo' else 'subjects'}, "
        f"{m['samples']} samples ({run})")
    log("  " + "   ".join(f"{NAMES[k]} {with_ci(m, k)}" for k in CI_KEYS))
    log(f"  weighted F1 {m['weighted_f1']:.4f}   authors' F1 {m['author_f1']:.4f}"
        + (f"   ([..]: 95 % CI, bootstrap over {pred.subject.nunique()} subjects)" if ci else ""))
    if m["absent_classes"]:
        log(f"  {ABSENT}: {', '.join(m['absent_classes'])}")
    log(f"  {'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for c, v in m["per_class"].items():
        log(f"  {c:<12}{v['precision']:>10.3f}{v['recall']:>10.3f}{v['f1']:>10.3f}{v['support']:>9d}")
    for d, v in m.get("per_dataset", {}).items():
        log(f"  {d:<12} n {v['n']:>4}   " + "   ".join(f"{NAMES[k]} {with_ci(v, k)}" for k in CI_KEYS)
            + (f"   (absent: {', '.join(v['absent_classes'])})" if v["absent_classes"] else ""))
    if curves:
        plot_curves(curves, os.path.join(run, "learning_curves.png"))
        uf1 = [e["uf1"] for e in curves]
        a = m["authors_protocol"]
        log(f"  pooled test UF1 over {len(curves)} epochs: min {min(uf1):.4f}, max {max(uf1):.4f}, "
            f"last {uf1[-1]:.4f} (learning_curves.png)")
        log(f"  authors' protocol, epoch {a['epoch']} PICKED ON TEST DATA (for comparison with the paper "
            f"only): accuracy {a['accuracy']:.4f}   UF1 {a['uf1']:.4f}   UAR {a['uar']:.4f}   "
            f"authors' F1 {a['author_f1']:.4f}")
    else:
        log("  no per-epoch scores in these fold files (made before per-epoch scoring): "
            "no per_epoch, authors_protocol or learning curves")
    return m


def seed_folders(run):
    """{seed: folder} of a multi-seed run folder (train.py --seeds: ordinary run folders
    RUN/seed<N>/), {} for an ordinary run folder."""
    if os.path.isfile(os.path.join(run, "config.json")) or not os.path.isdir(run):
        return {}
    found = {int(n[4:]): os.path.join(run, n) for n in os.listdir(run)
             if re.fullmatch(r"seed\d+", n) and os.path.isfile(os.path.join(run, n, "config.json"))}
    return dict(sorted(found.items()))


def mean_sd(rows, keys):
    """Mean and sample sd (ddof 1; None for one row) of `keys` over dicts."""
    v = {k: np.array([r[k] for r in rows], float) for k in keys}
    return ({k: float(x.mean()) for k, x in v.items()},
            {k: float(x.std(ddof=1)) if len(x) > 1 else None for k, x in v.items()})


def summarize_seeds(run, log=print):
    """RUN/summary.json of a multi-seed folder from its seeds' own summaries: seeds, per_seed
    (each one's headline metrics), mean and sd (ddof 1) of the headline and of authors_protocol;
    learning_curves.png with the mean and a +-1 sd band. The seeds must share every setting."""
    folders = seed_folders(run)
    got = {}
    for s, folder in folders.items():
        if os.path.isfile(os.path.join(folder, "summary.json")):
            with open(os.path.join(folder, "summary.json")) as f:
                got[s] = json.load(f)
    if not got:
        raise dl.DataError(f"{run}: no seed<N>/ run folder with a summary")
    (s0, first), base = next(iter(got.items())), lambda c: {k: v for k, v in c.items() if k != "seed"}
    for s, m in got.items():
        for k in sorted(set(base(m["config"])) | set(base(first["config"]))):
            if m["config"].get(k) != first["config"].get(k):
                raise dl.DataError(f"{folders[s]} was made with {k}={m['config'].get(k)!r}, {folders[s0]} "
                                   f"with {first['config'].get(k)!r}: the seeds of one folder must share "
                                   f"every setting")
        if (m["samples"], m["folds"]) != (first["samples"], first["folds"]):
            raise dl.DataError(f"{folders[s]} has {m['samples']} samples in {m['folds']} folds, "
                               f"{folders[s0]} {first['samples']} in {first['folds']}: summarize a seed "
                               f"once all its folds are done")
    seeds, runs = list(got), list(got.values())
    mean, sd = mean_sd(runs, HEADLINE)
    top = dict(seeds=seeds, per_seed={str(s): {k: m[k] for k in HEADLINE} | {"ci95": m.get("ci95")}
                                      | ({"authors_protocol": {k: m["authors_protocol"][k] for k in AP_KEYS}}
                                         if "authors_protocol" in m else {}) for s, m in got.items()},
               mean=mean, sd=sd, absent_classes=first["absent_classes"], folds=first["folds"],
               samples=first["samples"], seconds=round(sum(m["seconds"] for m in runs), 1),
               config=base(first["config"]) | {"seeds": seeds})
    if all("authors_protocol" in m for m in runs):
        ap_mean, ap_sd = mean_sd([m["authors_protocol"] for m in runs], AP_KEYS)
        top["authors_protocol"] = {"mean": ap_mean, "sd": ap_sd, "note": first["authors_protocol"]["note"]
                                   + "; each seed picks its own epoch"}
    if len({len(m.get("per_epoch") or []) for m in runs}) == 1 and runs[0].get("per_epoch"):
        keys = ("accuracy", "uf1", "uar", "author_f1", "train_loss")
        top["per_epoch"] = [{"epoch": e + 1, **mu, "sd": sg}
                            for e, (mu, sg) in enumerate(mean_sd([m["per_epoch"][e] for m in runs], keys)
                                                         for e in range(len(runs[0]["per_epoch"])))]
    utils.atomic_write(os.path.join(run, "summary.json"),
                       lambda f: f.write(json.dumps(top, indent=2).encode()))
    unfinished = [s for s in folders if s not in got]
    log(f"\n{len(seeds)} seed{'s' * (len(seeds) != 1)} ({' '.join(map(str, seeds))}), each {top['folds']} "
        f"folds over {top['samples']} samples ({run}): mean +- sd (sample sd)"
        + (f"; seeds {' '.join(map(str, unfinished))} have no summary yet, left out" if unfinished else ""))
    log("  " + f"{'':<18}" + "".join(f"{NAMES[k]:>18}" for k in HEADLINE))
    for s, m in got.items():
        log("  " + f"{f'seed {s}':<18}" + "".join(f"{m[k]:>18.4f}" for k in HEADLINE))
    log("  " + f"{'mean +- sd':<18}" + "".join(f"{pm(mean[k], sd[k]):>18}" for k in HEADLINE))
    if "authors_protocol" in top:
        a, d = top["authors_protocol"]["mean"], top["authors_protocol"]["sd"]
        log("  " + f"{'authors protocol':<18}"
            + "".join(f"{pm(a[k], d[k]) if k in a else '':>18}" for k in HEADLINE)
            + f"   (epoch picked on test data: {pm(a['epoch'], d['epoch'], 1)})")
    if top["absent_classes"]:
        log(f"  {ABSENT}: {', '.join(top['absent_classes'])}")
    if "per_epoch" in top:
        plot_curves(top["per_epoch"], os.path.join(run, "learning_curves.png"), seeds=len(seeds))
    return top


def epoch_curves(folds, classes):
    """Pooled test metrics and mean training loss after each epoch, from the folds'
    epoch_predictions; None when a fold file has none (or the folds disagree on epochs)."""
    counts = {len(fold.get("epoch_predictions") or []) for fold in folds}
    if len(counts) != 1 or 0 in counts:
        return None
    labels = [r["label"] for fold in folds for r in fold["rows"]]
    curves = []
    for e in range(counts.pop()):
        pred = [p for fold in folds for p in fold["epoch_predictions"][e]]
        m = metrics(labels, pred, classes)
        curves.append({"epoch": e + 1, **{k: m[k] for k in ("accuracy", "uf1", "uar", "author_f1")},
                       "train_loss": float(np.mean([fold["train_loss"][e] for fold in folds]))})
    return curves


def plot_confusion(y, p, classes, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    ConfusionMatrixDisplay.from_predictions(y, p, labels=list(range(len(classes))), display_labels=classes,
                                            ax=ax, colorbar=False, xticks_rotation=45)
    fig.tight_layout()
    utils.save_png(fig, path, dpi=100)


def plot_curves(curves, path, seeds=None):
    """Mean training loss over folds, and pooled test accuracy / UF1 / UAR after each epoch, with
    the last epoch (the reported one) and the authors' pick (best authors' F1 on test) marked.
    With `seeds`, the curves are means over that many seeds (summarize_seeds) drawn with a band of
    +-1 sd; each seed picks its own epoch, so no single pick is marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    ep = [e["epoch"] for e in curves]
    band = seeds is not None and seeds > 1

    def draw(ax, k, **kw):
        mu = np.array([e[k] for e in curves])
        line, = ax.plot(ep, mu, marker=".", **kw)
        if band:
            sd = np.array([e["sd"][k] for e in curves])
            ax.fill_between(ep, mu - sd, mu + sd, color=line.get_color(), alpha=0.2, lw=0)

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    draw(a, "train_loss", color="k")
    a.set(xlabel="epoch", ylabel="training loss (mean over folds)", title="training")
    for k, label in (("accuracy", "accuracy"), ("uf1", "UF1"), ("uar", "UAR")):
        draw(b, k, label=label)
    b.axvline(ep[-1], color="gray", lw=1, label=f"last epoch {ep[-1]} (reported)")
    if seeds is None:
        pick = max(curves, key=lambda e: e["author_f1"])["epoch"]
        b.axvline(pick, color="red", lw=1, ls="--", label=f"authors' pick, epoch {pick} (chosen on test)")
    over = f", mean{' +- sd' if band else ''} over {seeds} seed{'s' if seeds != 1 else ''}" if seeds else ""
    b.set(xlabel="epoch", ylabel="pooled over the held-out subjects", title="test (LOSO)" + over,
          ylim=(0, 1.02))
    if seeds:
        a.set_title("training" + over)
    b.legend(fontsize=8, loc="lower right")
    for ax in (a, b):
        ax.set_xlim(0.5, ep[-1] + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    utils.save_png(fig, path, dpi=100)


# ---------------------------------------------------------------------------------------------
# python compare.py RUN_A RUN_B: paired tests of two runs over the same samples

def load_runs(run):
    """{seed: (config, predictions with class indices)} of a run folder (its one seed) or of
    each seed<N>/ of a multi-seed folder; samples sorted by their id (subject/filename@onset)."""
    folders = seed_folders(run) or {None: run}
    out = {}
    for s, folder in folders.items():
        path = os.path.join(folder, "predictions.csv")
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise dl.DataError(f"{folder}: not a run folder (no config.json, no seed<N>/ run folders)")
        if not os.path.isfile(path):
            raise dl.DataError(f"{folder}: no predictions.csv (not finished? "
                               f"python train.py --summarize {folder})")
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
        pred = pd.read_csv(path, dtype={"subject": str, "filename": str})
        index = {c: k for k, c in enumerate(config["classes"])}
        pred = pred.assign(id=[dl.sample_id(r) for r in pred.to_dict("records")],
                           label=pred.label.map(index), prediction=pred.prediction.map(index))
        out[config["seed"] if s is None else s] = (config, pred.sort_values("id", ignore_index=True))
    return out


def same_samples(a, b, name_a, name_b):
    """Refuse, in one line, two prediction tables that are not over the same samples and labels."""
    ia, ib = set(a.id), set(b.id)
    if ia != ib:
        def only(x, y, n):
            d = sorted(x - y)
            return f"{len(d)} only in {n} ({', '.join(d[:3])}{', ...' * (len(d) > 3)})"
        raise dl.DataError(f"{name_a} and {name_b} are not over the same samples: " + "; ".join(
            only(x, y, n) for x, y, n in ((ia, ib, name_a), (ib, ia, name_b)) if x - y))


def paired(a, b, n_classes):
    """B - A of CI_KEYS with a paired bootstrap over subjects (the same drawn subjects for both
    runs), and McNemar's exact test on per-sample correctness. a, b: prediction tables, same rows."""
    from scipy.stats import binomtest
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
    right_a, right_b = (a.label == a.prediction).to_numpy(), (b.label == b.prediction).to_numpy()
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    n = only_a + only_b
    out["mcnemar"] = dict(right_only_a=only_a, right_only_b=only_b,
                          test="McNemar exact (binomial, discordant pairs)",
                          p_value=float(binomtest(only_b, n).pvalue) if n else 1.0)
    return out


def compare_runs(run_a, run_b):
    """Paired comparison of two run folders, seed by seed (matching seeds) for multi-seed ones,
    with the mean difference +- sd and a paired t-test over the seeds."""
    from scipy.stats import ttest_1samp
    A, B = load_runs(run_a), load_runs(run_b)
    one = len(A) == len(B) == 1 and not (seed_folders(run_a) or seed_folders(run_b))
    if one:   # two ordinary run folders: paired whatever their seeds
        B = {next(iter(A)): next(iter(B.values()))}
    seeds = sorted(set(A) & set(B))
    if not seeds:
        raise dl.DataError(f"{run_a} (seeds {' '.join(map(str, A))}) and {run_b} "
                           f"(seeds {' '.join(map(str, B))}) have no seed in common")
    out = dict(a=run_a, b=run_b, seeds=seeds, resamples=RESAMPLES, bootstrap_seed=BOOT_SEED, per_seed={})
    for s in seeds:
        (ca, pa), (cb, pb) = A[s], B[s]
        if ca["classes"] != cb["classes"]:
            raise dl.DataError(f"{run_a} has classes {' '.join(ca['classes'])}, "
                               f"{run_b} {' '.join(cb['classes'])}")
        same_samples(pa, pb, run_a, run_b)
        if (pa.label != pb.label).any():
            if not (ca.get("shuffle_labels") or cb.get("shuffle_labels")):
                i = (pa.label != pb.label).to_numpy().argmax()
                raise dl.DataError(f"{run_a} and {run_b} label sample {pa.id[i]} differently")
            out["labels"] = ("a --shuffle_labels control: each run is scored against the labels it was "
                             "trained and tested with, as in its own summary")
        out["per_seed"][str(s)] = paired(pa, pb, len(ca["classes"]))
    first = A[seeds[0]][0], B[seeds[0]][0]
    out["differ_in"] = sorted(k for k in set(first[0]) | set(first[1])
                              if (one or k != "seed") and first[0].get(k) != first[1].get(k))
    if one:
        return {k: v for k, v in out.items() if k not in ("seeds", "per_seed")} | out["per_seed"][str(s)]
    if len(seeds) > 1:
        out["over_seeds"] = {}
        for k in CI_KEYS:
            d = np.array([out["per_seed"][str(s)]["metrics"][k]["difference"] for s in seeds])
            # the seeds are independent replications of training; each difference is already
            # paired over the same samples, so the test over seeds is one-sample on the differences
            p = 1.0 if not d.any() else float(ttest_1samp(d, 0).pvalue)
            out["over_seeds"][k] = dict(mean=float(d.mean()), sd=float(d.std(ddof=1)),
                                        p_value=None if np.isnan(p) else p,
                                        test="paired t-test over seeds (one-sample t-test of the "
                                             "per-seed differences)")
    return out


def report(c, log=print):
    p = lambda v: "-" if v is None else f"{v:.4f}"
    ci = lambda v: "-" if v is None else f"[{v[0]:+.4f}, {v[1]:+.4f}]"
    first = c["per_seed"][str(c["seeds"][0])] if "per_seed" in c else c
    log(f"B - A: A {c['a']}, B {c['b']}; {first['samples']} samples of {first['subjects']} subjects"
        + (f"; the runs differ in {', '.join(c['differ_in'])}" if c["differ_in"] else "; same settings"))
    if "labels" in c:
        log(f"  {c['labels']}")
    if "over_seeds" not in c:   # two runs, or multi-seed folders with one seed in common
        if "per_seed" in c:
            log(f"  seed {c['seeds'][0]} (the one seed in common)")
        log(f"  {'metric':<10}{'A':>8}{'B':>8}{'B - A':>9}   {'95 % CI (paired bootstrap)':<26}{'p':>8}")
        for k, m in first["metrics"].items():
            log(f"  {NAMES[k]:<10}{m['a']:>8.4f}{m['b']:>8.4f}{m['difference']:>+9.4f}   {ci(m['ci95']):<26}"
                f"{p(m['p_value']):>8}")
        mc = first["mcnemar"]
        log(f"  McNemar exact test on per-sample correctness: right only in A {mc['right_only_a']}, "
            f"only in B {mc['right_only_b']}, p {p(mc['p_value'])}")
        return
    n = len(c["seeds"])
    log(f"  over {n} seeds ({' '.join(map(str, c['seeds']))}): mean +- sd of the per-seed values, p of a "
        f"paired t-test over seeds; per seed: B - A (paired bootstrap p)")
    log(f"  {'metric':<10}{'A':>18}{'B':>18}{'B - A':>20}{'p':>8}   per seed")
    for k, o in c["over_seeds"].items():
        ms = [c["per_seed"][str(s)]["metrics"][k] for s in c["seeds"]]
        mu, sd = mean_sd(ms, "ab")
        log(f"  {NAMES[k]:<10}{pm(mu['a'], sd['a']):>18}{pm(mu['b'], sd['b']):>18}"
            f"{pm(o['mean'], o['sd']):>20}{p(o['p_value']):>8}   "
            + "  ".join(f"{m['difference']:+.4f} ({p(m['p_value'])})" for m in ms))
    log("  McNemar exact p per seed: " + "  ".join(
        f"seed {s} {p(c['per_seed'][str(s)]['mcnemar']['p_value'])}" for s in c["seeds"]))


def parser():
    p = argparse.ArgumentParser(description="Paired comparison of two run folders over the same samples: "
                                "B - A of accuracy, UF1 and UAR with a paired bootstrap over subjects, and "
                                "McNemar's exact test; multi-seed folders seed by seed, with a t-test over "
                                "seeds.")
    p.add_argument("run_a", metavar="RUN_A", help="a run folder (train.py --weight_save_path) or --seeds one")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--json", metavar="FILE", help="also write the comparison as JSON")
    return p


def main(argv=None):
    args = parser().parse_args(argv)

    def job():
        c = compare_runs(args.run_a, args.run_b)
        report(c)
        if args.json:
            utils.atomic_write(args.json, lambda f: f.write(json.dumps(c, indent=2).encode()))
        return 0
    return utils.cli(job)


if __name__ == "__main__":
    sys.exit(main())
