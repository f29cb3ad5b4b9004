"""
Scores of LOSO run folders: the pooled metrics, curves and plots that train.py writes into a run
folder (`summarize`), and a paired comparison of two runs over the same samples.

    python train.py --summarize runs/casme_dssn         # (re)write one run's summary

    import compare
    m = compare.summarize("runs/casme_dssn")             # summary.json's dict
    compare.metrics(y, p, classes)                       # accuracy, UF1, UAR, weighted F1, authors' F1

Metrics pool the predictions of all folds first (MEGC's UF1 / UAR); the authors' "F1" is 2PR/(P+R)
of the pooled macro precision and recall (their evaluationmatrix.py).
"""
import json
import os

import numpy as np
import pandas as pd

import dataloader as dl
import utils


def metrics(y, p, classes):
    from sklearn.metrics import (accuracy_score, f1_score, precision_recall_fscore_support,
                                 precision_score, recall_score)
    labels = list(range(len(classes)))
    P = precision_score(y, p, labels=labels, average="macro", zero_division=0)
    R = recall_score(y, p, labels=labels, average="macro", zero_division=0)
    pc, rc, fc, sc = precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, p)),
        "uf1": float(f1_score(y, p, labels=labels, average="macro", zero_division=0)),
        "uar": float(R),
        "weighted_f1": float(f1_score(y, p, labels=labels, average="weighted", zero_division=0)),
        "author_f1": float(2 * P * R / (P + R)) if P + R > 0 else 0.0,   # the authors' evaluationmatrix.py
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


def summarize(run, log=print):
    """Pool every fold of a run folder into predictions.csv, summary.json, confusion_matrix.png.
    A fold of a subject (or dataset) that is not in the run's data is refused, never pooled."""
    with open(os.path.join(run, "config.json")) as f:
        config = json.load(f)
    folds = []
    for name in sorted(os.listdir(os.path.join(run, "folds"))):
        if name.endswith(".json"):
            if "folds" in config and name[:-5] not in config["folds"]:   # (older config.json: no check)
                raise dl.DataError(f"{os.path.join(run, 'folds', name)}: a fold of {name[:-5]}, which is not "
                                   f"in this run's data ({len(config['folds'])} folds): move it out of the folder")
            folds.append(read_fold(os.path.join(run, "folds", name)))
    if not folds:
        raise dl.DataError(f"{run}: no finished folds")
    classes = config["classes"]
    pred = pd.DataFrame([r for fold in folds for r in fold["rows"]])
    m = metrics(pred.label, pred.prediction, classes)
    m["per_subject"] = {s: {"n": int(len(g)), "accuracy": float((g.label == g.prediction).mean())}
                        for s, g in pred.groupby("subject")}
    if pred.dataset.nunique() > 1:   # the MEGC composite is also scored per dataset
        m["per_dataset"] = {d: {k: v for k, v in metrics(g.label, g.prediction, classes).items() if k != "per_class"}
                            | {"n": int(len(g))} for d, g in pred.groupby("dataset")}
    m["folds"] = len(folds)
    m["samples"] = int(len(pred))
    m["seconds"] = round(sum(fold["seconds"] for fold in folds), 1)
    m["config"] = config
    out = pred.assign(label=pred.label.map(classes.__getitem__), prediction=pred.prediction.map(classes.__getitem__))
    curves = epoch_curves(folds, classes)
    if curves:
        m["per_epoch"] = curves
        best = max(curves, key=lambda e: e["author_f1"])   # max keeps the earliest of ties
        m["authors_protocol"] = {k: best[k] for k in ("epoch", "accuracy", "uf1", "uar", "author_f1")} | {
            "note": "epoch chosen by the best pooled authors' F1 ON THE TEST SUBJECTS, as the authors did: "
                    "for comparison with the paper only; the headline figures are the last epoch's"}
    utils.atomic_write(os.path.join(run, "predictions.csv"), lambda f: out.to_csv(f, index=False))
    utils.atomic_write(os.path.join(run, "summary.json"), lambda f: f.write(json.dumps(m, indent=2).encode()))
    plot_confusion(pred.label, pred.prediction, classes, os.path.join(run, "confusion_matrix.png"))
    protocol = config.get("protocol", "loso")
    log(f"\n{protocol.upper()} over {m['folds']} {'datasets' if protocol == 'lodo' else 'subjects'}, "
        f"{m['samples']} samples ({run})")
    log(f"  accuracy {m['accuracy']:.4f}   UF1 {m['uf1']:.4f}   UAR {m['uar']:.4f}   "
        f"weighted F1 {m['weighted_f1']:.4f}   authors' F1 {m['author_f1']:.4f}")
    log(f"  {'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for c, v in m["per_class"].items():
        log(f"  {c:<12}{v['precision']:>10.3f}{v['recall']:>10.3f}{v['f1']:>10.3f}{v['support']:>9d}")
    for d, v in m.get("per_dataset", {}).items():
        log(f"  {d:<12} n {v['n']:>4}   accuracy {v['accuracy']:.4f}   UF1 {v['uf1']:.4f}   UAR {v['uar']:.4f}")
    if curves:
        plot_curves(curves, os.path.join(run, "learning_curves.png"))
        uf1 = [e["uf1"] for e in curves]
        a = m["authors_protocol"]
        log(f"  pooled test UF1 over {len(curves)} epochs: min {min(uf1):.4f}, max {max(uf1):.4f}, "
            f"last {uf1[-1]:.4f} (learning_curves.png)")
        log(f"  authors' protocol, epoch {a['epoch']} PICKED ON TEST DATA (for comparison with the paper only): "
            f"accuracy {a['accuracy']:.4f}   UF1 {a['uf1']:.4f}   UAR {a['uar']:.4f}   authors' F1 {a['author_f1']:.4f}")
    else:
        log("  no per-epoch scores in these fold files (made before per-epoch scoring): "
            "no per_epoch, authors_protocol or learning curves")
    return m


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


def plot_curves(curves, path):
    """Mean training loss over folds, and pooled test accuracy / UF1 / UAR after each epoch, with
    the last epoch (the reported one) and the authors' pick (best authors' F1 on test) marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    ep = [e["epoch"] for e in curves]
    pick = max(curves, key=lambda e: e["author_f1"])["epoch"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ep, [e["train_loss"] for e in curves], marker=".", color="k")
    a.set(xlabel="epoch", ylabel="training loss (mean over folds)", title="training")
    for k, label in (("accuracy", "accuracy"), ("uf1", "UF1"), ("uar", "UAR")):
        b.plot(ep, [e[k] for e in curves], marker=".", label=label)
    b.axvline(ep[-1], color="gray", lw=1, label=f"last epoch {ep[-1]} (reported)")
    b.axvline(pick, color="red", lw=1, ls="--", label=f"authors' pick, epoch {pick} (chosen on test)")
    b.set(xlabel="epoch", ylabel="pooled over the held-out subjects", title="test (LOSO)", ylim=(0, 1.02))
    b.legend(fontsize=8, loc="lower right")
    for ax in (a, b):
        ax.set_xlim(0.5, ep[-1] + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    utils.save_png(fig, path, dpi=100)

