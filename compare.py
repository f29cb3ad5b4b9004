"""
Paired comparison of two LOSO run folders over the same samples: B - A of accuracy, UF1 and UAR
with a paired bootstrap over subjects and McNemar's exact test; multi-seed folders (train.py
--seeds) seed by seed, with a t-test over the seeds.

    python compare.py runs/casme_sssn runs/casme_dssn   # B - A with paired tests, one line a metric
    python compare.py RUN_A RUN_B --json diff.json      # also as JSON (every p-value under p_value)
    python compare.py runs/megc_sssn their_predictions.csv   # a method run elsewhere, same samples

The statistics are metrics.py's; the runs are read from their predictions.csv (runfolder.py). Either
side may instead be a predictions CSV written by another tool (read_csv): columns subject, clip
(or filename), label, prediction [, onset], labels as class names or as the run's codes (0 = its
first class, e.g. MEGC's 0 negative, 1 positive, 2 surprise), over the same samples as the run.
"""
import argparse
import json
import os
import re
import sys

import pandas as pd

import datasets
import metrics
import runfolder
import utils


def same_samples(a, b, name_a, name_b):
    """Refuse, in one line, two prediction tables that are not over the same samples and labels."""
    ia, ib = set(a.id), set(b.id)
    if ia != ib:
        def only(x, y, n):
            d = sorted(x - y)
            return f"{len(d)} only in {n} ({', '.join(d[:3])}{', ...' * (len(d) > 3)})"
        raise datasets.DataError(f"{name_a} and {name_b} are not over the same samples: " + "; ".join(
            only(x, y, n) for x, y, n in ((ia, ib, name_a), (ib, ia, name_b)) if x - y))


def is_csv(path):
    return str(path).lower().endswith(".csv") and os.path.isfile(path)


def read_csv(path, config, run_pred, summary):
    """A predictions CSV of another tool as load_runs gives a run (config, predictions, summary),
    read against the run it is compared with (its config and predictions): its classes, and each
    row's onset where the CSV gives none (a FLOWS or sheet sample is one per subject and clip)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:
        raise datasets.DataError(f"{path}: cannot read CSV ({type(e).__name__}: "
                                 f"{(str(e).splitlines() or [''])[0]})") from None
    df.columns = [c.strip().lower() for c in df.columns]
    df = df.rename(columns={"filename": "clip"})
    need = ["subject", "clip", "label", "prediction"]
    if not set(need) <= set(df.columns):
        raise datasets.DataError(f"{path}: expected columns {', '.join(need)} [, onset]; it has "
                                 f"{', '.join(df.columns)}")
    classes = config["classes"]
    codes = {c: k for k, c in enumerate(classes)} | {str(k): k for k in range(len(classes))}
    onsets = {}
    for r in run_pred.itertuples():
        onsets.setdefault((r.subject, r.filename), []).append(int(r.onset))
    rows = []
    for i, r in enumerate(df.to_dict("records")):
        where = f"{path}: row {i + 2}"
        key = (r["subject"].strip(), r["clip"].strip())
        for k in ("label", "prediction"):
            v = re.sub(r"\.0*$", "", r[k].strip())
            if v.lower() not in codes and v not in codes:
                raise datasets.DataError(f"{where}: {k} {r[k]!r} is neither a class of the run "
                                         f"({', '.join(classes)}) nor its code 0..{len(classes) - 1}")
            r[k] = codes.get(v, codes.get(v.lower()))
        if r.get("onset", "").strip():
            onset = int(float(r["onset"]))
        elif len(onsets.get(key, [])) == 1:
            onset = onsets[key][0]
        else:
            raise datasets.DataError(f"{where}: sample {key[0]}/{key[1]} is "
                                     + ("not in the run" if key not in onsets else
                                        "several samples of the run: give an onset column"))
        rows.append(dict(subject=key[0], filename=key[1], onset=onset, label=r["label"],
                         prediction=r["prediction"]))
    pred = pd.DataFrame(rows)
    pred["id"] = [datasets.sample_id(r) for r in rows]
    if pred.id.duplicated().any():
        raise datasets.DataError(f"{path}: sample {pred.id[pred.id.duplicated()].iloc[0]} is listed twice")
    cfg = {"classes": classes, "seed": config["seed"], "predictions": os.path.abspath(path)}
    return cfg, pred.sort_values("id", ignore_index=True), {"partial": False}


def compare_runs(run_a, run_b):
    """Paired comparison of two run folders, seed by seed (matching seeds) for multi-seed ones,
    with the mean difference +- sd and a paired t-test over the seeds."""
    if is_csv(run_a) and is_csv(run_b):
        raise datasets.DataError(f"{run_a}, {run_b}: at least one side is a run folder, whose classes and "
                                 f"samples the CSV is read against")
    A = None if is_csv(run_a) else runfolder.load_runs(run_a)
    B = None if is_csv(run_b) else runfolder.load_runs(run_b)
    A = A or {s: read_csv(run_a, *B[s]) for s in B}
    B = B or {s: read_csv(run_b, *A[s]) for s in A}
    one = len(A) == len(B) == 1 and not (runfolder.seed_folders(run_a) or runfolder.seed_folders(run_b))
    if one:   # two ordinary run folders: paired whatever their seeds
        B = {next(iter(A)): next(iter(B.values()))}
    seeds = sorted(set(A) & set(B))
    if not seeds:
        raise datasets.DataError(f"{run_a} (seeds {' '.join(map(str, A))}) and {run_b} "
                                 f"(seeds {' '.join(map(str, B))}) have no seed in common")
    out = dict(a=run_a, b=run_b, seeds=seeds, resamples=metrics.RESAMPLES, bootstrap_seed=metrics.BOOT_SEED,
               per_seed={})
    for s in seeds:
        (ca, pa, sa), (cb, pb, sb) = A[s], B[s]
        for side, m in (("a", sa), ("b", sb)):   # a partial run is compared, and says so
            if m["partial"]:
                out.setdefault("partial", {}).setdefault(side, {})[str(s)] = runfolder.partial_note(m)
        if ca["classes"] != cb["classes"]:
            raise datasets.DataError(f"{run_a} has classes {' '.join(ca['classes'])}, "
                                     f"{run_b} {' '.join(cb['classes'])}")
        same_samples(pa, pb, run_a, run_b)
        if (pa.label != pb.label).any():
            if not (ca.get("shuffle_labels") or cb.get("shuffle_labels")):
                i = (pa.label != pb.label).to_numpy().argmax()
                raise datasets.DataError(f"{run_a} and {run_b} label sample {pa.id[i]} differently")
            out["labels"] = ("a --shuffle_labels control: each run is scored against the labels it was "
                             "trained and tested with, as in its own summary")
        out["per_seed"][str(s)] = metrics.paired(pa, pb, len(ca["classes"]))
    first = A[seeds[0]][0], B[seeds[0]][0]
    out["differ_in"] = sorted(k for k in set(first[0]) | set(first[1])
                              if (one or k != "seed") and first[0].get(k) != first[1].get(k))
    if one:   # one seed each: no seed numbers
        flat = {k: v for k, v in out.items() if k not in ("seeds", "per_seed")}
        if "partial" in out:
            flat["partial"] = {side: note for side, notes in out["partial"].items()
                               for note in notes.values()}
        return flat | out["per_seed"][str(s)]
    if len(seeds) > 1:
        out["over_seeds"] = {k: metrics.seed_test([out["per_seed"][str(s)]["metrics"][k]["difference"]
                                                   for s in seeds]) for k in metrics.CI_KEYS}
    return out


def report(c, log=print):
    p = lambda v: "-" if v is None else f"{v:.4f}"
    ci = lambda v: "-" if v is None else f"[{v[0]:+.4f}, {v[1]:+.4f}]"
    first = c["per_seed"][str(c["seeds"][0])] if "per_seed" in c else c
    log(f"B - A: A {c['a']}, B {c['b']}; {first['samples']} samples of {first['subjects']} subjects"
        + ("; a predictions CSV records no settings to compare" if is_csv(c["a"]) or is_csv(c["b"]) else
           f"; the runs differ in {', '.join(c['differ_in'])}" if c["differ_in"] else "; same settings"))
    if "labels" in c:
        log(f"  {c['labels']}")
    for side, note in c.get("partial", {}).items():
        note = note if isinstance(note, str) else "; ".join(f"seed {s}: {n}" for s, n in note.items())
        log(f"  {side.upper()} is PARTIAL ({note}): its figures are over those folds only")
    if "over_seeds" not in c:   # two runs, or multi-seed folders with one seed in common
        if "per_seed" in c:
            log(f"  seed {c['seeds'][0]} (the one seed in common)")
        log(f"  {'metric':<10}{'A':>8}{'B':>8}{'B - A':>9}   {'95 % CI (paired bootstrap)':<26}{'p':>8}")
        for k, m in first["metrics"].items():
            log(f"  {metrics.NAMES[k]:<10}{m['a']:>8.4f}{m['b']:>8.4f}{m['difference']:>+9.4f}   "
                f"{ci(m['ci95']):<26}{p(m['p_value']):>8}")
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
        mu, sd = metrics.mean_sd(ms, "ab")
        pm = runfolder.pm
        log(f"  {metrics.NAMES[k]:<10}{pm(mu['a'], sd['a']):>18}{pm(mu['b'], sd['b']):>18}"
            f"{pm(o['mean'], o['sd']):>20}{p(o['p_value']):>8}   "
            + "  ".join(f"{m['difference']:+.4f} ({p(m['p_value'])})" for m in ms))
    undefined = [metrics.NAMES[k] for k, o in c["over_seeds"].items() if "note" in o]
    if undefined:
        log(f"  {', '.join(undefined)}: t-test undefined: every seed differs by the same amount (sd 0)")
    log("  McNemar exact p per seed: " + "  ".join(
        f"seed {s} {p(c['per_seed'][str(s)]['mcnemar']['p_value'])}" for s in c["seeds"]))


def parser():
    p = argparse.ArgumentParser(description="Paired comparison of two run folders over the same samples: "
                                "B - A of accuracy, UF1 and UAR with a paired bootstrap over subjects, and "
                                "McNemar's exact test; multi-seed folders seed by seed, with a t-test over "
                                "seeds.")
    p.add_argument("run_a", metavar="RUN_A",
                   help="a run folder (train.py --weight_save_path) or --seeds one, "
                   "or a predictions CSV of another tool (subject, clip, label, prediction [, onset])")
    p.add_argument("run_b", metavar="RUN_B", help="the same")
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
