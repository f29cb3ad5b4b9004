"""
The run folder: what train.py writes, and what compare.py and variants.py read.

    RUN/config.json           every setting that changes the results, the data's fingerprint, its folds
    RUN/folds/<held out>.json  one finished fold (write_fold / read_fold), <held out>.pt its model
    RUN/train.log             what train.py printed
    RUN/summary.json, predictions.csv, confusion_matrix.png, learning_curves.png   (summarize)
    RUN/seed<N>/              --seeds: one run folder per seed; RUN/summary.json over them

    import runfolder
    m = runfolder.summarize("runs/casme_dssn")    # (re)write the summary, return summary.json's dict
    runs = runfolder.load_runs("runs/casme_dssn")  # {seed: (config, predictions, summary)}

A run folder is resumed only with the same config.json: a fold depends only on the seed, its
held-out subject and the data, so folds trained by several processes, resumed or sharded, pool
into the result an uninterrupted run gives. A summary is of every fold config.json expects, or,
only when asked (`partial`), of those there are and marked so.
"""
import hashlib
import json
import os
import re

import numpy as np
import pandas as pd

import caches
import datasets
import metrics
import utils

# summary.json's authors_protocol: the epoch with the best pooled authors' F1 on the test subjects
AP_KEYS = ("epoch", "accuracy", "uf1", "uar", "author_f1")
ABSENT = "not in the ground truth, so left out of UF1, UAR and authors' F1"
# the arguments of train.py that change the results; config.json holds them and what run_config adds
CONFIG_KEYS = ("path", "img_root", "catego", "parts", "num_classes", "protocol", "model", "image_mode",
               "batch_size", "epochs", "learning_rate", "seed", "amp", "face", "encoding", "flow", "demo",
               "shuffle_labels", "final", "recipe", "batch_order",
               # the network's fusion (None for a network without one, train.resolve_network)
               "combination_mode")


# ---------------------------------------------------------------------------------------------
# config.json: what a run folder was made with

def fingerprint(samples):
    """{sample id: "label=L apex=A frames=H"} (H: a digest of the two frame files' sha256), what
    config.json records of the data so that a rerun on changed data is refused, never mixed in."""
    src = caches.frame_sources(samples)
    # the sha256 of the source files, in order (onset, apex frames; or flow file, apex image)
    frames = lambda s: hashlib.sha256(" ".join(str(v) for k, v in s.items() if k.endswith("sha256"))
                                      .encode()).hexdigest()[:16]
    return {datasets.sample_id(r): f"label={r['label']} apex={r['apex']} frames={frames(s)}"
            for r, s in zip(samples.table.to_dict("records"), src)}


def data_changes(old, new):
    """One line naming what differs between two fingerprints, or None."""
    fields = lambda v: dict(x.split("=") for x in v.split())
    diff = {i: "removed" if i not in new else "added" if i not in old else
            "/".join(k for k, v in fields(new[i]).items() if fields(old[i]).get(k) != v)
            for i in sorted(set(old) | set(new)) if old.get(i) != new.get(i)}
    if diff:
        return f"{len(diff)} samples changed: " + ", ".join(f"{i} ({f})" for i, f in list(diff.items())[:3]) \
            + (", ..." if len(diff) > 3 else "")


def run_config(args, samples):
    """Everything that changes the results (train.py's resolved arguments); a run folder is only
    resumed with the same. `samples` is a fingerprint of the data (ids, labels, apexes, frames)
    and `folds` what is held out."""
    c = {k: getattr(args, k) for k in CONFIG_KEYS}
    # single paths stay plain strings, so the config reads as the user typed it
    one = lambda ps: [os.path.abspath(p) for p in utils.as_list(ps)]
    c["path"], c["img_root"] = [x[0] if len(x) == 1 else x or None
                                for x in (one(args.path), one(args.img_root))]
    c["pretrained"] = "none" if args.pretrained == "none" else utils.sha256(args.pretrained)
    c["classes"] = samples.classes
    c["device_type"] = args.device.split(":")[0]
    if c["device_type"] == "cuda":   # each changes a GPU's results; on CPU neither applies
        c["tf32"], c["deterministic"] = args.tf32, args.deterministic
    c["samples"] = fingerprint(samples)
    c["folds"] = sorted(set(samples.table["subject" if args.protocol == "loso" else "dataset"]))
    return c


def read_config(run):
    with open(os.path.join(run, "config.json")) as f:
        return json.load(f)


def check_config(run, config):
    """Before a fold (or final.pt) is written: its folder still has this run's config.json. Another
    process may have set the folder up again (open_run) while this one trained its first fold."""
    if read_config(run) != config:
        raise datasets.DataError(f"{run}/config.json was replaced by another run's settings while this one "
                                 f"trained: its result is not written; use another --weight_save_path, "
                                 f"or --new")


def beside(run):
    """The first of run_2, run_3, ... that does not exist (--new)."""
    i = 2
    while os.path.exists(f"{run}_{i}"):
        i += 1
    return f"{run}_{i}"


def trained(run):
    """Whether a run folder holds anything trained: a fold file (readable or not), final.pt or a summary."""
    folds = os.path.join(run, "folds")
    return bool(os.path.isdir(folds) and os.listdir(folds)) or any(
        os.path.exists(os.path.join(run, f)) for f in ("final.pt", "summary.json"))


def open_run(run, config, new=False):
    """The run folder to train into: `run`, made with `config`, or resumed if its config.json is
    the same; one line naming the first difference if it is not (with `new`, a folder beside it).
    A folder that holds nothing trained (its run stopped before its first fold, e.g. on an error)
    takes the new config: no result of the old one is there to mix with."""
    if new and os.path.exists(run):
        run = beside(run)
    if os.path.isfile(os.path.join(run, "config.json")) and read_config(run) != config and not trained(run):
        old = read_config(run)
        k = next(k for k in [*config, *old] if old.get(k) != config.get(k))
        print(f"{run}: nothing trained in it yet, so it is set up again with this run's settings "
              f"(it was made with " + ("other data" if k == "samples" else f"{k}={old.get(k)!r}") + ")",
              flush=True)
        os.remove(os.path.join(run, "config.json"))
    if os.path.isfile(os.path.join(run, "config.json")):
        old = read_config(run)
        for k in config:
            if k == "samples" and old.get(k) != config[k]:   # the same flags on changed data: folds never mix
                why = data_changes(old[k], config[k]) if k in old else "config.json records no samples"
                raise datasets.DataError(f"{run} was trained on other data ({why}): use --new or another "
                                         f"--weight_save_path")
            if old.get(k) != config[k]:
                raise datasets.DataError(f"{run} was made with {k}={old.get(k)!r}, this run has "
                                         f"{config[k]!r}: use another --weight_save_path, or --new")
    else:
        utils.atomic_write(os.path.join(run, "config.json"),
                           lambda f: f.write(json.dumps(config, indent=2).encode()))
    os.makedirs(os.path.join(run, "folds"), exist_ok=True)
    return run


class Log:
    """Print a line and append it to a log file (train.log); closed when the `with` block ends.

        with runfolder.Log(os.path.join(run, "train.log")) as log:
            log("fold 1/26 ...")
    """

    def __init__(self, path):
        self.f = open(path, "a")

    def __call__(self, msg):
        print(msg, flush=True)
        self.f.write(msg + "\n")
        self.f.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


# ---------------------------------------------------------------------------------------------
# fold files: folds/<held out>.json

def fold_path(run, held_out, ext=".json"):
    """folds/<held out>.json (or its model, ext .pt): the subject or dataset made one path component
    by caches.path_part, so a subject such as site1/P01 is one file in folds/, never a subfolder,
    and two subjects never share a file (read_folds maps the names back)."""
    return os.path.join(run, "folds", caches.path_part(held_out) + ext)


def prediction_rows(data, idx, probs, classes):
    """A fold's `rows`: one per test sample idx of dataloader's streams `data`, with its label,
    predicted class and every class's probability. A sample is (subject, filename, onset): one
    CAS(ME)^3 task video holds several."""
    return [dict(dataset=str(data.datasets[i]), subject=str(data.subjects[i]),
                 filename=str(data.filenames[i]), onset=int(data.onsets[i]), label=int(data.y[i]),
                 prediction=int(pr.argmax()),
                 **{f"p_{c}": round(float(q), 6) for c, q in zip(classes, pr)})
            for i, pr in zip(idx, probs)]


def write_fold(run, what, held_out, seconds, train_loss, rows, optimizer_start_step, epoch_predictions):
    """folds/<held_out>.json, atomically: {what ("subject" or "dataset"): held_out, seconds,
    train_loss (the mean of each epoch), rows (prediction_rows), optimizer_start_step (Keras
    Adam's counter at the fold's first step), epoch_predictions (each epoch's predicted labels of
    `rows`, in order: the per-epoch curves)}."""
    fold = {what: held_out, "seconds": seconds, "train_loss": train_loss, "rows": rows,
            "optimizer_start_step": optimizer_start_step, "epoch_predictions": epoch_predictions}
    utils.atomic_write(fold_path(run, held_out), lambda f: f.write(json.dumps(fold).encode()))
    return fold


def read_fold(path):
    """(the fold file as a dict, None), (None, None) if it is missing, or (None, why it cannot be
    read): one cut short or emptied is not a finished fold (train.py trains it again)."""
    try:
        with open(path, "rb") as f:
            fold = json.loads(f.read())
        if not isinstance(fold, dict) or not all(isinstance(fold.get(k), list)
                                                 for k in ("rows", "train_loss", "epoch_predictions")):
            raise ValueError("not a fold file of train.py")
        return fold, None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None, str(e) or "empty"


def read_folds(run, config):
    """({held out: fold} of the fold files that can be read, {path: why} of those that cannot).
    A fold of a subject (or dataset) that is not in the run's data is refused, never pooled."""
    folds, unreadable = {}, {}
    held = {os.path.basename(fold_path(run, f)): f for f in config["folds"]}   # file name -> held out
    for name in sorted(os.listdir(os.path.join(run, "folds"))):
        if name.endswith(".json"):
            path = os.path.join(run, "folds", name)
            if name not in held:
                raise datasets.DataError(f"{path}: a fold of {name[:-5]}, which is not in this run's data "
                                         f"({len(config['folds'])} folds): move it out of the folder")
            fold, why = read_fold(path)
            if why is not None:
                unreadable[path] = why
            elif fold is not None:
                folds[held[name]] = fold
    return folds, unreadable


def missing_folds(run, config, folds, unreadable):
    """One line on what a run folder lacks: the folds not finished (unreadable files named), and
    how to finish them or summarize what there is."""
    missing = [f for f in config["folds"] if f not in folds]
    bad = "".join(f"; {path}: cannot read fold file ({why})" for path, why in unreadable.items())
    return (f"{run}: {len(missing)} of {len(config['folds'])} folds missing ({', '.join(missing[:8])}"
            f"{', ...' if len(missing) > 8 else ''}){bad}: rerun the run's command to finish them, or "
            f"python train.py --summarize {run} --partial summarizes the {len(folds)} there "
            f"{'is' if len(folds) == 1 else 'are'}, marked partial")


# ---------------------------------------------------------------------------------------------
# summaries

def partial_note(m):
    """What a partial summary lacks: '1 of 2 folds, missing 02'; of a multi-seed folder, also the
    seeds that are missing folds and those left out."""
    missing = [f for f in m["folds_expected"] if f not in m["folds_found"]]
    folds = f"{len(m['folds_found'])} of {len(m['folds_expected'])} folds, missing {', '.join(missing)}"
    if "seeds_expected" not in m:
        return folds
    out = [f"seeds {' '.join(map(str, m['seeds_partial']))} are missing folds ({folds})"] * bool(missing)
    left = [s for s in m["seeds_expected"] if s not in m["seeds"]]
    return "; ".join(out + [f"seeds {' '.join(map(str, left))} have no summary, left out"] * bool(left))


def whole(folder):
    """Whether a run folder has a summary of all its folds."""
    path = os.path.join(folder, "summary.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        return not json.load(f)["partial"]


def pm(mean, sd, digits=4):
    """'0.7120 +- 0.0200' ('0.7120' without an sd: one seed)."""
    return f"{mean:.{digits}f}" + (f" +- {sd:.{digits}f}" if sd is not None else "")


def with_ci(m, k):
    """'0.7120 [0.6410, 0.7730]' (the interval when the summary has one)."""
    ci = (m.get("ci95") or {}).get(k)
    return f"{m[k]:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def score(pred, classes):
    """summary.json's scores of a prediction table: the headline metrics with their ci95, per
    subject and, for a composite, per dataset."""
    m = metrics.metrics(pred.label, pred.prediction, classes)
    ci = metrics.ci95(pred, len(classes))
    if ci:
        n, resamples, seed = pred.subject.nunique(), metrics.RESAMPLES, metrics.BOOT_SEED
        m["ci95"] = ci | {"note": f"2.5 and 97.5 percentiles over {resamples} bootstrap resamples of the "
                                  f"{n} subjects (seed {seed}): uncertainty over subjects for this model and "
                                  f"seed, not over seeds or datasets"}
    m["per_subject"] = {s: {"n": int(len(g)), "accuracy": float((g.label == g.prediction).mean())}
                        for s, g in pred.groupby("subject")}
    if pred.dataset.nunique() > 1:   # the MEGC composite is also scored per dataset
        m["per_dataset"] = {d: {k: v for k, v in metrics.metrics(g.label, g.prediction, classes).items()
                                if k != "per_class"}
                            | {"n": int(len(g)), "ci95": metrics.ci95(g, len(classes))}
                            for d, g in pred.groupby("dataset")}
    return m


def epoch_curves(folds, classes):
    """Pooled test metrics and mean training loss after each epoch, from the folds'
    epoch_predictions."""
    labels = [r["label"] for fold in folds for r in fold["rows"]]
    curves = []
    for e in range(len(folds[0]["epoch_predictions"])):
        pred = [p for fold in folds for p in fold["epoch_predictions"][e]]
        m = metrics.metrics(labels, pred, classes)
        curves.append({"epoch": e + 1, **{k: m[k] for k in ("accuracy", "uf1", "uar", "author_f1")},
                       "train_loss": float(np.mean([fold["train_loss"][e] for fold in folds]))})
    return curves


def summarize(run, log=print, partial=False):
    """Pool every fold of a run folder into predictions.csv, summary.json, confusion_matrix.png and
    learning_curves.png; a multi-seed folder (seed<N>/ run folders): each seed's, then the mean
    and sd over seeds. A run that lacks folds is refused (one line naming them), or with
    `partial` summarized from the folds there are and marked partial: summary.json's `partial`,
    `folds_expected` and `folds_found`, and the screen."""
    seeds = seed_folders(run)
    if seeds:
        for folder in seeds.values():
            if read_folds(folder, read_config(folder))[0]:
                summarize(folder, log, partial)
        return summarize_seeds(run, log, partial)
    config = read_config(run)
    found, unreadable = read_folds(run, config)
    if len(found) < len(config["folds"]) and not (partial and found):
        raise datasets.DataError(missing_folds(run, config, found, unreadable) if found or not partial
                           else f"{run}: no finished folds")
    folds = list(found.values())
    classes = config["classes"]
    pred = pd.DataFrame([r for fold in folds for r in fold["rows"]])
    m = score(pred, classes)
    m["folds"] = len(folds)
    m["partial"] = len(folds) < len(config["folds"])
    m["folds_expected"], m["folds_found"] = config["folds"], list(found)
    if unreadable:
        m["unreadable"] = unreadable
    m["samples"] = int(len(pred))
    m["seconds"] = round(sum(fold["seconds"] for fold in folds), 1)
    m["config"] = config
    curves = m["per_epoch"] = epoch_curves(folds, classes)
    best = max(curves, key=lambda e: e["author_f1"])   # max keeps the earliest of ties
    m["authors_protocol"] = {k: best[k] for k in AP_KEYS} | {
        "note": "epoch chosen by the best pooled authors' F1 ON THE TEST SUBJECTS, as the authors did: "
                "for comparison with the paper only; the headline figures are the last epoch's"}
    out = pred.assign(label=pred.label.map(classes.__getitem__),
                      prediction=pred.prediction.map(classes.__getitem__))
    utils.atomic_write(os.path.join(run, "predictions.csv"), lambda f: out.to_csv(f, index=False))
    utils.atomic_write(os.path.join(run, "summary.json"), lambda f: f.write(json.dumps(m, indent=2).encode()))
    plot_confusion(pred.label, pred.prediction, classes, os.path.join(run, "confusion_matrix.png"))
    plot_curves(curves, os.path.join(run, "learning_curves.png"))
    report(m, run, log)
    return m


def report(m, run, log=print):
    """A run's summary on screen."""
    protocol, n = m["config"]["protocol"], len(m["per_subject"])
    log(f"\n{protocol.upper()} over {m['folds']} {'datasets' if protocol == 'lodo' else 'subjects'}, "
        f"{m['samples']} samples ({run})")
    if m["partial"]:
        log(f"  PARTIAL: {partial_note(m)}; every figure below is over these folds only" + "".join(
            f"; {path}: cannot read fold file ({why})" for path, why in m.get("unreadable", {}).items()))
    log("  " + "   ".join(f"{metrics.NAMES[k]} {with_ci(m, k)}" for k in metrics.CI_KEYS))
    log(f"  weighted F1 {m['weighted_f1']:.4f}   authors' F1 {m['author_f1']:.4f}"
        + (f"   ([..]: 95 % CI, bootstrap over {n} subjects)" if "ci95" in m else ""))
    if m["absent_classes"]:
        log(f"  {ABSENT}: {', '.join(m['absent_classes'])}")
    log(f"  {'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for c, v in m["per_class"].items():
        log(f"  {c:<12}{v['precision']:>10.3f}{v['recall']:>10.3f}{v['f1']:>10.3f}{v['support']:>9d}")
    for d, v in m.get("per_dataset", {}).items():
        log(f"  {d:<12} n {v['n']:>4}   "
            + "   ".join(f"{metrics.NAMES[k]} {with_ci(v, k)}" for k in metrics.CI_KEYS)
            + (f"   (absent: {', '.join(v['absent_classes'])})" if v["absent_classes"] else ""))
    uf1, a = [e["uf1"] for e in m["per_epoch"]], m["authors_protocol"]
    log(f"  pooled test UF1 over {len(uf1)} epochs: min {min(uf1):.4f}, max {max(uf1):.4f}, "
        f"last {uf1[-1]:.4f} (learning_curves.png)")
    log(f"  authors' protocol, epoch {a['epoch']} PICKED ON TEST DATA (for comparison with the paper "
        f"only): accuracy {a['accuracy']:.4f}   UF1 {a['uf1']:.4f}   UAR {a['uar']:.4f}   "
        f"authors' F1 {a['author_f1']:.4f}")


# ---------------------------------------------------------------------------------------------
# multi-seed folders (train.py --seeds)

def seed_folders(run):
    """{seed: folder} of a multi-seed run folder (train.py --seeds: ordinary run folders
    RUN/seed<N>/), {} for an ordinary run folder."""
    if os.path.isfile(os.path.join(run, "config.json")) or not os.path.isdir(run):
        return {}
    found = {int(n[4:]): os.path.join(run, n) for n in os.listdir(run)
             if re.fullmatch(r"seed\d+", n) and os.path.isfile(os.path.join(run, n, "config.json"))}
    return dict(sorted(found.items()))


def summarize_seeds(run, log=print, partial=False):
    """RUN/summary.json of a multi-seed folder from its seeds' own summaries: seeds, per_seed
    (each one's headline metrics), mean and sd (ddof 1) of the headline and of authors_protocol;
    learning_curves.png with the mean and a +-1 sd band. The seeds must share every setting and
    their folds. A seed without a summary, or with a partial one, is refused (one line), or with
    `partial` left out, or taken as it is, and the summary marked partial."""
    folders = seed_folders(run)
    got = {}
    for s, folder in folders.items():
        if os.path.isfile(os.path.join(folder, "summary.json")):
            with open(os.path.join(folder, "summary.json")) as f:
                got[s] = json.load(f)
    unfinished = [s for s in folders if s not in got]
    partial_seeds = [s for s, m in got.items() if m["partial"]]
    if (unfinished or partial_seeds) and not partial:
        raise datasets.DataError(f"{run}: " + "; ".join(
            [f"seeds {' '.join(map(str, unfinished))} have no summary"] * bool(unfinished)
            + [f"seeds {' '.join(map(str, partial_seeds))} are missing folds"] * bool(partial_seeds))
            + f": rerun the run's command to finish them, or python train.py --summarize {run} --partial "
              f"summarizes the seeds there are, marked partial")
    if not got:
        raise datasets.DataError(f"{run}: no seed<N>/ run folder with a summary")
    (s0, first), base = next(iter(got.items())), lambda c: {k: v for k, v in c.items() if k != "seed"}
    for s, m in got.items():
        for k in sorted(set(base(m["config"])) | set(base(first["config"]))):
            if m["config"].get(k) != first["config"].get(k):
                raise datasets.DataError(f"{folders[s]} was made with {k}={m['config'].get(k)!r}, "
                                         f"{folders[s0]} with {first['config'].get(k)!r}: the seeds of one "
                                         f"folder must share every setting")
        if (m["samples"], m["folds_found"]) != (first["samples"], first["folds_found"]):
            raise datasets.DataError(f"{folders[s]} has {m['samples']} samples in {m['folds']} folds, "
                                     f"{folders[s0]} {first['samples']} in {first['folds']}: the seeds of "
                                     f"one summary must hold the same folds")
    seeds, runs = list(got), list(got.values())
    mean, sd = metrics.mean_sd(runs, metrics.HEADLINE)
    ap_mean, ap_sd = metrics.mean_sd([m["authors_protocol"] for m in runs], AP_KEYS)
    top = dict(seeds=seeds,
               per_seed={str(s): {k: m[k] for k in metrics.HEADLINE} | {"ci95": m.get("ci95")}
                         | {"authors_protocol": {k: m["authors_protocol"][k] for k in AP_KEYS}}
                         for s, m in got.items()},
               mean=mean, sd=sd, absent_classes=first["absent_classes"], folds=first["folds"],
               partial=bool(unfinished or partial_seeds), seeds_expected=list(folders),
               seeds_partial=partial_seeds,
               folds_expected=first["folds_expected"], folds_found=first["folds_found"],
               samples=first["samples"], seconds=round(sum(m["seconds"] for m in runs), 1),
               config=base(first["config"]) | {"seeds": seeds},
               authors_protocol={"mean": ap_mean, "sd": ap_sd, "note": first["authors_protocol"]["note"]
                                 + "; each seed picks its own epoch"})
    if first.get("per_dataset"):   # a composite: each dataset's scores, seed by seed and over the seeds
        for s, m in got.items():
            top["per_seed"][str(s)]["per_dataset"] = {d: {k: v[k] for k in metrics.HEADLINE}
                                                      for d, v in m["per_dataset"].items()}
        top["per_dataset"] = {}
        for d, v in first["per_dataset"].items():
            mu, sg = metrics.mean_sd([m["per_dataset"][d] for m in runs], metrics.HEADLINE)
            top["per_dataset"][d] = dict(n=v["n"], mean=mu, sd=sg)
    keys = ("accuracy", "uf1", "uar", "author_f1", "train_loss")
    top["per_epoch"] = [{"epoch": e + 1, **mu, "sd": sg}
                        for e, (mu, sg) in enumerate(metrics.mean_sd([m["per_epoch"][e] for m in runs], keys)
                                                     for e in range(len(runs[0]["per_epoch"])))]
    utils.atomic_write(os.path.join(run, "summary.json"),
                       lambda f: f.write(json.dumps(top, indent=2).encode()))
    plot_curves(top["per_epoch"], os.path.join(run, "learning_curves.png"), seeds=len(seeds))
    names = metrics.NAMES
    log(f"\n{len(seeds)} seed{'s' * (len(seeds) != 1)} ({' '.join(map(str, seeds))}), each {top['folds']} "
        f"folds over {top['samples']} samples ({run}): mean +- sd (sample sd)")
    if top["partial"]:
        log(f"  PARTIAL: {partial_note(top)}")
    log("  " + f"{'':<18}" + "".join(f"{names[k]:>18}" for k in metrics.HEADLINE))
    for s, m in got.items():
        log("  " + f"{f'seed {s}':<18}" + "".join(f"{m[k]:>18.4f}" for k in metrics.HEADLINE))
    log("  " + f"{'mean +- sd':<18}" + "".join(f"{pm(mean[k], sd[k]):>18}" for k in metrics.HEADLINE))
    for d, v in top.get("per_dataset", {}).items():
        name = f"{d} ({v['n']})"
        log("  " + f"{name:<18}" + "".join(f"{pm(v['mean'][k], v['sd'][k]):>18}" for k in metrics.HEADLINE))
    log("  " + f"{'authors protocol':<18}"
        + "".join(f"{pm(ap_mean[k], ap_sd[k]) if k in ap_mean else '':>18}" for k in metrics.HEADLINE)
        + f"   (epoch picked on test data: {pm(ap_mean['epoch'], ap_sd['epoch'], 1)})")
    if top["absent_classes"]:
        log(f"  {ABSENT}: {', '.join(top['absent_classes'])}")
    return top


# ---------------------------------------------------------------------------------------------
# plots

def plot_confusion(y, p, classes, path):
    from sklearn.metrics import ConfusionMatrixDisplay
    plt = utils.pyplot()
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
    from matplotlib.ticker import MaxNLocator
    plt = utils.pyplot()
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
# reading finished runs (compare.py)

def load_runs(run):
    """{seed: (config, predictions with class indices, summary)} of a run folder (its one seed) or
    of each seed<N>/ of a multi-seed folder; samples sorted by their id (subject/filename@onset)."""
    folders = seed_folders(run) or {None: run}
    out = {}
    for s, folder in folders.items():
        path = os.path.join(folder, "predictions.csv")
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise datasets.DataError(f"{folder}: not a run folder (no config.json, no seed<N>/ run folders)")
        if not os.path.isfile(path):
            raise datasets.DataError(f"{folder}: no predictions.csv (not finished? "
                                     f"python train.py --summarize {folder})")
        config = read_config(folder)
        with open(os.path.join(folder, "summary.json")) as f:
            summary = json.load(f)
        pred = pd.read_csv(path, dtype={"subject": str, "filename": str})
        index = {c: k for k, c in enumerate(config["classes"])}
        pred = pred.assign(id=[datasets.sample_id(r) for r in pred.to_dict("records")],
                           label=pred.label.map(index), prediction=pred.prediction.map(index))
        out[config["seed"] if s is None else s] = (config, pred.sort_values("id", ignore_index=True), summary)
    return out
