"""
Preprocess a dataset once into per-sample .npz caches (aligned face, TV-L1 flow, u, v,
magnitude, strain, gray apex), so training never touches the frames again.

    python save_preprocess_weight.py --csv_path CASME2-coding-20140508.xlsx \\
        --root CASME2_RAW --catego CASME --cache_dir cache/CASME --workers 2
    python save_preprocess_weight.py --root SMIC/HS --catego SMIC      # no sheet: folders are labels
    python save_preprocess_weight.py --catego COMPOSITE \\
        --csv_path CASME2-coding-20140508.xlsx SAMM_Micro_FACS_Codes_v2.xlsx \\
        --root CASME2_RAW SAMM SMIC/HS                                 # order: CASME II, SAMM, SMIC
    python save_preprocess_weight.py ... --flow opencv  # OpenCV's TV-L1 instead of the IPOL program's
    python save_preprocess_weight.py --catego CASME3 \\
        --csv_path "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx" --root CASME3_A --num_classes 7
    python save_preprocess_weight.py --catego CUSTOM --csv_path clips.csv --root frames  # any dataset
    python save_preprocess_weight.py ... --check      # list samples and missing frames, compute nothing
    python save_preprocess_weight.py ... --show 0 --out sample0.png   # what the network sees
    python save_preprocess_weight.py ... --export flows/ [--export_folds]   # our flow for other tools
    python save_preprocess_weight.py --catego FLOWS --csv_path flows/flows.csv --root flows/
    python save_preprocess_weight.py --catego FLOWS --root three_norm_u_v_os   # MEGC 2019 per-fold images

Caches are written atomically and skipped when already valid (same settings, sheet row and
frame files; docs/reproducibility.md), so an interrupted run just continues. Samples that
fail (missing frame, no face) are listed at the end, exit status 1.
"""
import argparse
import os
import sys


import caches
import dataloader as dl
import datasets
import flags
import flowfiles
import utils


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.data(p, sheet="--csv_path", root="--root", required=True)
    flags.preprocessing(p)
    p.add_argument("--check", action="store_true", help="only list samples and missing frames")
    p.add_argument("--show", type=utils.nonneg_int, default=None, metavar="N", help="plot sample N's inputs")
    p.add_argument("--out", default="sample.png", help="image file for --show")
    p.add_argument("--export", metavar="DIR", help="also write every preprocessed sample's flow for other "
                   "tools: .flo (u, v in pixels) with its apex frame and flows.csv (--catego FLOWS reads "
                   "it), and for MEGC's classes (--num_classes 3) the composite's 28x28 (u, v, strain) "
                   "images with their label CSV; a later export into DIR replaces the files listed in "
                   "its export_manifest.json")
    p.add_argument("--export_folds", action="store_true",
                   help="with --export, the images also in the per-fold layout "
                   "<subject>/u_test|u_train/<label>/")
    return p


def missing(samples):
    """Every absent input, once, as (what, path, samples affected, where): a missing subject or
    clip folder is one line, not two missing frames for each of its samples; `where` is the
    sheet row (or folder) of the first sample affected."""
    gone = {}
    for r in samples.table.itertuples():
        for p in dict.fromkeys(caches.source_paths(r._asdict())):
            if os.path.isfile(p):
                continue
            top = p   # climb to the highest missing folder
            while not os.path.isdir(os.path.dirname(top)) and os.path.dirname(top) != top:
                top = os.path.dirname(top)
            what = "frame" if top == p else "clip folder" if top == os.path.dirname(p) else \
                "subject folder" if top == os.path.dirname(os.path.dirname(p)) else "folder"
            gone.setdefault((what, top), {}).setdefault((r.subject, r.filename, r.onset), r.where)
    return [(what, path, len(s), next(iter(s.values())))
            for (what, path), s in sorted(gone.items(), key=lambda kv: kv[0][1])]


def check(samples):
    """Print what the dataset gives and every missing frame or folder (a missing folder once);
    return the number of samples that cannot be preprocessed."""
    print(datasets.describe(samples))
    gone = missing(samples)
    for what, path, n, where in gone:
        print(f"  missing {what}: {path}" + (f"  ({n} samples, first {where})" if n > 1 else f"  ({where})"))
    hit = {(r.subject, r.filename, r.onset) for r in samples.table.itertuples()
           if not all(map(os.path.isfile, caches.source_paths(r._asdict())))}
    print(f"{len(gone)} missing frames or folders, {len(hit)} of {len(samples.table)} samples affected")
    return len(hit)


def show(samples, cache_dir, n, out, encoding="fixed", face="auto", flow="ipol"):
    """Onset and apex crops and the five network inputs of sample n, side by side (its cache
    built first if need be)."""
    plt = utils.pyplot()
    one = datasets.Samples(samples.table.iloc[[n]], samples.classes, samples.catego, [])
    failed = caches.build_caches(one, cache_dir, encoding, face, 1, flow=flow)
    if failed:   # its reason: there is no cache to show
        raise datasets.DataError(f"--show {n}: {failed[0][0]} cannot be preprocessed: {failed[0][1]}")
    row, path, settings, sources = next(caches.cache_jobs(one, cache_dir, encoding, face, flow))
    # a flow file (FLOWS) has no frames, and gives only the streams it holds (dl.stream_modes)
    # O (STSTNet's 28x28 image) is made from these at load time, not held in the cache
    keys = ([] if row.get("flow_path") else ["onset", "apex"]) + ["u", "v", *dl.stream_modes(one)]
    keys.remove("O")
    why = []
    c = caches.read_cache(path, settings, keys, sources, why)
    if c is None:
        raise datasets.DataError(f"{path}: cache {caches.CACHE_FAULTS[why[-1]]}")
    titles = dict(onset="onset", apex="apex", u="u", v="v", F="F magnitude", S="S strain",
                  G="G gray apex")
    fig, axes = plt.subplots(1, len(keys), figsize=(2.2 * len(keys), 2.6))
    for ax, k in zip(axes, keys):
        t = titles[k] + (" (x16+128)" if k in ("u", "v") and settings.get("encoding") == "fixed" else "")
        ax.imshow(c[k], cmap=None if c[k].ndim == 3 else "gray", vmin=0, vmax=255)
        ax.set_title(t, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{datasets.sample_id(row)}  ({samples.classes[row['label']]})", fontsize=10)
    fig.tight_layout()
    utils.save_png(fig, out, dpi=90)
    print(f"wrote {out}")


def run(args):
    cache_dir = args.cache_dir or os.path.join("cache", args.catego)
    if args.export_folds and not args.export:
        raise datasets.DataError("--export_folds goes with --export DIR")
    samples = dl.read_samples(args.csv_path, args.root, args.catego, args.num_classes, args.classes,
                              args.parts)
    if args.check:
        return 1 if check(samples) else 0
    if args.show is not None:
        if not 0 <= args.show < len(samples.table):
            raise datasets.DataError(f"--show {args.show}: the dataset has samples "
                                     f"0..{len(samples.table) - 1}")
        show(samples, cache_dir, args.show, args.out, args.encoding, args.face, args.flow)
        return 0
    print(datasets.describe(samples))
    failures = caches.build_caches(samples, cache_dir, args.encoding, args.face, args.workers,
                                   flow=args.flow)
    if failures:
        print(caches.failure_table(failures))
    print(f"caches in {cache_dir}: {len(samples.table) - len(failures)} of {len(samples.table)} samples")
    if args.export:
        flowfiles.export(samples, cache_dir, args.export, args.encoding, args.face, args.flow,
                         args.export_folds, skip={s for s, _ in failures})
    return 1 if failures else 0


def main(argv=None):
    args = parser().parse_args(argv)
    return utils.cli(lambda: run(args), "interrupted: finished caches are kept; rerun to continue")


if __name__ == "__main__":
    sys.exit(main())
