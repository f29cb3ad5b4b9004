"""
The paper's grid of variants in one command: SSSN with each of F, G, S; DSSN with each pair
FG, FS, GS and each fusion add / mul / cat (12 runs). Each variant is an ordinary train.py LOSO
run folder under --out, so a repeated command reuses the finished ones and trains only the rest.

    python variants.py                                    # the synthetic demo, all 12 variants
    python variants.py --path CASME2-coding-20140508.xlsx --img_root CASME2_RAW --catego CASME \\
        --pretrained partial.pt                           # -> runs/variants_CASME/table.md
    python variants.py ... --models DSSN --modes F G --fusions mul cat    # a narrower grid
    python variants.py ... --only DSSN_FG_mul DSSN_GS_mul # this machine's share (same --out)

Names: SSSN_<mode> (SSSN_G) and DSSN_<modes>_<fusion> (DSSN_FG_mul: stream 1 gets u v F,
stream 2 u v G). Every other flag is train.py's and is passed to each variant's run as given
(python train.py -h); without --path it runs on the demo, like train.py. Any network declared in
network.py runs the same way (--models NAME: one variant per combination of modes). Writes table.md and
table.csv in --out from every variant that has a summary, and prints the table.
"""
import argparse
import csv
import io
import itertools
import json
import os
import sys

import metrics
import network
import preprocess as pp
import runfolder
import train
import utils

PAPER_MODELS = ("SSSN", "DSSN")   # the paper's grid; --models takes any network of network.py
MODES = ("F", "G", "S", "O")   # the paper's order, so pairs read FG, FS, GS; O: STSTNet's 28x28 image
FUSIONS = tuple(dict.fromkeys(f for d in network.MODELS.values() for f in d.fusions))
# train.py's flags that variants.py sets for each variant (or that would make it something else)
SET_HERE = ("model", "image_mode", "combination_mode", "weight_save_path", "new", "summarize", "final")
COLUMNS = [("variant", "variant"), ("model", "model"), ("modes", "modes"), ("fusion", "fusion"),
           ("accuracy", "accuracy"), ("uf1", "UF1"), ("uar", "UAR"), ("author_f1", "authors' F1"),
           # the authors' protocol: the epoch with the best pooled authors' F1, picked on test data
           # (what the paper's table reports; train.py's summary.json authors_protocol)
           ("ap_epoch", "AP epoch"), ("ap_accuracy", "AP accuracy"), ("ap_uf1", "AP UF1"),
           ("ap_author_f1", "AP authors' F1"), ("seconds", "seconds")]
SCORES = ("accuracy", "uf1", "uar", "author_f1", "ap_accuracy", "ap_uf1", "ap_author_f1")
# table.csv only: the sd over seeds of SCORES (--seeds), the 95 % CI over subjects (one seed), and
# what a partial summary (train.py --summarize --partial) lacks
EXTRA = [f"{k}_sd" for k in SCORES] + [f"{k}_ci_{e}" for k in metrics.CI_KEYS for e in ("low", "high")] \
    + ["partial"]


def grid(models=PAPER_MODELS, modes=MODES, fusions=FUSIONS):
    """[(name, model, modes, fusion)] in the paper's order: for each network (its declaration in
    network.py), each combination of as many modes as its fewest streams, with each of its fusions
    (fusion None for a network without one)."""
    modes = [m for m in MODES if m in modes]   # canonical order whatever order they were given in
    out = []
    for name in models:
        net = network.MODELS[name]
        fit = [m for m in modes if pp.stream_size(m) == net.size]   # streams of the network's size
        for combo in itertools.combinations(fit, net.streams[0]):
            for f in [f for f in FUSIONS if f in fusions and f in net.fusions] if net.fusions else [None]:
                out.append((f"{name}_{''.join(combo)}" + (f"_{f}" if f else ""), name, list(combo), f))
    return out


def parser():
    # no abbreviations: --model (train.py's, refused) must not be read as --models
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Every other flag is train.py's (python train.py -h: the data, "
                                "--epochs, --seeds, --recipe, ...), passed to each variant's run as given.")
    p.add_argument("--models", nargs="+", default=list(PAPER_MODELS), choices=list(network.MODELS),
                   help="networks (network.py) to try; default the paper's")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                   help="streams to try (SSSN: each one; DSSN: each pair; a network of n streams: each n "
                   "of its size)")
    p.add_argument("--fusions", nargs="+", default=list(FUSIONS), choices=FUSIONS,
                   help="fusions to try, for the networks that have them")
    p.add_argument("--only", nargs="+", metavar="VARIANT",
                   help="run just these variants (e.g. DSSN_FG_mul), whatever --models/--modes/--fusions say")
    p.add_argument("--out",
                   help="folder of the run folders and the table (default runs/variants_<catego or demo>)")
    return p


def split_argv(argv):
    """(variants.py's own arguments, the train.py argv given with them, that argv parsed by
    train.py's parser). train.py's parser checks its flags as it does for train.py itself; the
    flags that variants.py sets for each variant are refused."""
    args, rest = parser().parse_known_args(argv)
    unset = object()
    p = train.parser()
    p.set_defaults(**{k: unset for k in SET_HERE})
    targs = p.parse_args(rest)
    given = [k for k in SET_HERE if getattr(targs, k) is not unset]
    if given:
        raise utils.UserError(f"--{given[0]} cannot be given to variants.py, which sets it for each "
                              f"variant (choose them with --models, --modes, --fusions or --only; the "
                              f"folder with --out)")
    return args, rest, targs


def train_argv(rest, model, modes, fusion, run):
    """train.py's command line of one variant: the flags given to variants.py, then the variant's."""
    return [*rest, "--model", model, "--image_mode", *modes, "--weight_save_path", run] \
        + (["--combination_mode", fusion] if fusion else [])


def read_rows(out, variants):
    """Table rows of the variants that have a summary.json, and the configs they were run with.
    A multi-seed variant (--seeds) gives the mean over seeds and its sd; one seed its CI."""
    rows, configs = [], {}
    for name, model, modes, fusion in variants:
        path = os.path.join(out, name, "summary.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            s = json.load(f)
        mean, sd = s.get("mean", s), s.get("sd", {})
        ap = s["authors_protocol"]
        ap_mean, ap_sd = ap.get("mean", ap), ap.get("sd", {})
        ci = s.get("ci95") or {}
        r4 = lambda v: round(v, 4) if v is not None else ""
        rows.append(dict(variant=name, model=model, modes="".join(modes), fusion=fusion or "",
                         **{k: round(mean[k], 4) for k in ("accuracy", "uf1", "uar", "author_f1")},
                         ap_epoch=round(ap_mean["epoch"], 1),
                         **{f"ap_{k}": r4(ap_mean.get(k)) for k in ("accuracy", "uf1", "author_f1")},
                         seconds=s["seconds"],
                         **{f"{k}_sd": r4(sd.get(k)) for k in ("accuracy", "uf1", "uar", "author_f1")},
                         **{f"ap_{k}_sd": r4(ap_sd.get(k)) for k in ("accuracy", "uf1", "author_f1")},
                         **{f"{k}_ci_{e}": r4(ci[k][j]) if k in ci else "" for k in metrics.CI_KEYS
                            for j, e in enumerate(("low", "high"))},
                         partial=runfolder.partial_note(s) if s["partial"] else ""))
        configs[name] = s["config"] | {"folds": s["folds"], "samples": s["samples"]}
    return rows, configs


def differing(configs):
    """Settings (other than the variant's own) that are not the same in every summary: a table
    that mixes, say, epochs or datasets is flagged rather than silently compared."""
    own = {"model", "image_mode", "combination_mode"}
    keys = sorted({k for c in configs.values() for k in c} - own)
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs.values()}) > 1]


def markdown(rows, configs, missing):
    head = [h for _, h in COLUMNS]
    lines = []
    if configs:
        c = next(iter(configs.values()))
        if c["demo"]:
            data = "synthetic demo"
        else:   # SMIC has no sheet: name its folder
            paths = utils.as_list(c["path"]) or utils.as_list(c["img_root"])
            data = f"{c['catego']} ({', '.join(map(os.path.basename, paths))})"
        lodo = c["protocol"] == "lodo"
        lines += [f"{'LODO' if lodo else 'LOSO'} on {data}: {c['samples']} samples, {c['folds']} "
                  f"{'datasets' if lodo else 'subjects'}, {len(c['classes'])} classes; "
                  f"recipe {c['recipe']}, {c['epochs']} epochs, batch {c['batch_size']}, "
                  f"lr {c['learning_rate']}, "
                  + (f"seeds {' '.join(map(str, c['seeds']))}" if "seeds" in c else f"seed {c['seed']}")
                  + ", "
                  f"pretrained {c['pretrained'][:12]}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    def cell(r, k):
        if k in SCORES and r[k] != "":
            ci = r.get(f"{k}_ci_low", "")
            return runfolder.pm(r[k], r[f"{k}_sd"] if r.get(f"{k}_sd", "") != "" else None) + (
                f" [{ci:.4f}, {r[f'{k}_ci_high']:.4f}]" if ci != "" else "")
        if k == "variant" and r["partial"]:
            return f"{r[k]} (PARTIAL)"
        return f"{r[k]:.1f}" if k == "seconds" else (str(r[k]) or "-")
    for r in rows:
        lines.append("| " + " | ".join(cell(r, k) for k, _ in COLUMNS) + " |")
    if rows:
        lines += ["", "accuracy .. authors' F1: the last epoch (honest). AP: the authors' protocol, "
                      "the epoch with the best pooled authors' F1 picked ON THE TEST SUBJECTS, "
                      "as the paper's table did: "
                      "compare AP accuracy / AP authors' F1 with the paper's Acc / F1."]
        if any(r["uf1_sd"] != "" for r in rows):
            lines += ["", "a +- b: mean and sample sd over the seeds (training randomness; same subjects)."]
        if any(r["uf1_ci_low"] != "" for r in rows):
            lines += ["", "[lo, hi]: 95 % CI of a bootstrap over subjects, for this model and seed (not over "
                          "seeds or datasets); python compare.py A B tests a difference."]
    partial = [f"{r['variant']} ({r['partial']})" for r in rows if r["partial"]]
    if partial:
        lines += ["", f"**PARTIAL**: {'; '.join(partial)}: summarized from the folds there are "
                      f"(train.py --summarize --partial), so not comparable with the whole runs."]
    diff = differing(configs)
    if diff:
        lines += ["", "**Warning**: these variants were not all run with the same "
                      f"settings: {', '.join(diff)} "
                      f"(see each run folder's config.json)."]
    if missing:
        lines += ["", f"Not finished yet: {' '.join(missing)}."]
    return "\n".join(lines) + "\n"


def write_table(out, variants, requested):
    rows, configs = read_rows(out, variants)
    done = {r["variant"] for r in rows}
    missing = [name for name, *_ in requested if name not in done]
    md = markdown(rows, configs, missing)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[k for k, _ in COLUMNS] + EXTRA, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    utils.atomic_write(os.path.join(out, "table.md"), lambda f: f.write(md.encode()))
    utils.atomic_write(os.path.join(out, "table.csv"), lambda f: f.write(buf.getvalue().encode()))
    return md, rows


def run(args, rest, targs):
    everything = grid(list(network.MODELS))
    if args.only:
        names = {v[0]: v for v in everything}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            raise utils.UserError(f"--only {' '.join(unknown)}: not a variant (variants: {' '.join(names)})")
        todo = [names[n] for n in dict.fromkeys(args.only)]
    else:
        todo = grid(args.models, args.modes, args.fusions)
        if not todo:
            raise utils.UserError("the grid is empty: a network of n streams needs n --modes (DSSN two, "
                                  "SSSN one)")
    tag = "demo" if targs.path is None and targs.img_root is None else targs.catego
    tag += "-" + "+".join(targs.parts) if targs.parts else ""
    tag += "_lodo" if targs.protocol == "lodo" else ""
    out = args.out or os.path.join("runs", f"variants_{tag}")
    print(f"{len(todo)} variant{'s' * (len(todo) != 1)} into {out}/: {' '.join(v[0] for v in todo)}")
    rc = 0
    for k, (name, model, modes, fusion) in enumerate(todo, 1):
        print(f"\n=== variant {k}/{len(todo)}: {name} ===", flush=True)
        # In-process: one interpreter, so dlib, the TV-L1 solver and the data code load once.
        # A finished run folder trains nothing (train.py's resume) but is still checked
        # against these settings, so a changed flag is refused instead of silently mixed in.
        rc = train.main(train_argv(rest, model, modes, fusion, os.path.join(out, name)))
        if rc != 0:
            print(f"\nvariant {name} stopped (exit {rc}); finished variants are kept, "
                  f"rerun the same command to continue", file=sys.stderr)
            break
    if os.path.isdir(out):
        # The table covers every variant of the full grid with a summary in --out, so shares run
        # on other machines (--only) into the same folder all land in it.
        md, rows = write_table(out, everything, todo)
        print(f"\n{len(rows)} variant{'s' * (len(rows) != 1)} with results "
              f"({os.path.join(out, 'table.md')}, table.csv):\n")
        print(md, end="")
    return rc


def main(argv=None):
    return utils.cli(lambda: run(*split_argv(argv)))


if __name__ == "__main__":
    sys.exit(main())
