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

Caches are written atomically and skipped when already valid (same settings, sheet row and
frame files; docs/reproducibility.md), so an interrupted run just continues. Samples that
fail (missing frame, no face) are listed at the end, exit status 1.
"""
import argparse
import os
import sys

import dataloader as dl
import flags
import preprocess as pp
import utils


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.data(p, sheet="--csv_path", root="--root", required=True)
    flags.preprocessing(p)
    p.add_argument("--check", action="store_true", help="only list samples and missing frames")
    p.add_argument("--show", type=utils.nonneg_int, default=None, metavar="N", help="plot sample N's inputs")
    p.add_argument("--out", default="sample.png", help="image file for --show")
    return p


# ---------------------------------------------------------------------------------------------
# building the caches: what train.py also runs for any cache that is missing

def _prepare_one(job):
    """All inputs of one pair, pp.features (in a worker): (job, features or None, error). Each
    worker computes whole pairs: the flow is most of a pair's time (the IPOL flow runs on one
    thread, see pp.tvl1_ipol), so the pairs of N workers run on N cores."""
    row, path, settings, _ = job
    try:
        onset, apex = pp.read_image(row["onset_path"]), pp.read_image(row["apex_path"])
        return job, pp.features(onset, apex, settings["face"], settings["encoding"], row["onset_path"],
                                settings["flow"]), None
    except pp.PreprocessError as e:
        return job, None, str(e)


def _write_one(job, feats):
    """Write one pair's cache atomically; an error line or None."""
    row, path, settings, sources = job
    try:
        dl.write_cache(path, feats, settings, sources, row)
        return None
    except OSError as e:   # e.g. a full or read-only cache folder: a failure of this sample
        return f"{e.filename or path}: cannot write cache ({e.strerror or e})"


def build_caches(samples, cache_dir, encoding="fixed", face="auto", workers=1, quiet=False, flow="ipol"):
    """Compute and write the cache of every sample that lacks a valid one.
    Returns [(subject/filename@onset, reason)] of the failures; finished caches are never lost.
    Workers prepare whole pairs (pp.features: alignment, flow, encoding); this process writes
    each cache as its pair arrives, so an interrupted run keeps every cache written before it
    stopped."""
    changed = []   # read_cache appends the caches whose sources changed
    jobs = [job for job in dl.cache_jobs(samples, cache_dir, encoding, face, flow)
            if dl.read_cache(*job[1:3], ["u"], job[3], changed) is None]
    if not quiet:
        print(f"caches: {len(samples.table) - len(jobs)} valid in {cache_dir}, {len(jobs)} to build"
              + (f" ({len(changed)} rebuilt: their sheet row or frames changed)" if changed else ""))
    failures = []
    if not jobs:
        return failures
    workers = max(1, min(workers, len(jobs)))
    with utils.pool(workers) as pool:
        results = pool.imap_unordered(_prepare_one, jobs)   # in the order they finish
        for job, feats, err in utils.progress(results, "preprocess", len(jobs), "pair", disable=quiet):
            err = err or _write_one(job, feats)
            if err:
                failures.append((dl.sample_id(job[0]), err))
    return failures


def failure_table(failures):
    """The samples build_caches could not preprocess, one line each with the reason."""
    width = max(len(s) for s, _ in failures)
    return "\n".join([f"\n{len(failures)} samples failed:"]
                     + [f"  {s:<{width}}  {why}" for s, why in sorted(failures)])


def missing(samples):
    """Every absent input, once, as (what, path, samples affected, where): a missing subject or
    clip folder is one line, not two missing frames for each of its samples; `where` is the
    sheet row (or folder) of the first sample affected."""
    gone = {}
    for r in samples.table.itertuples():
        for p in dict.fromkeys((r.onset_path, r.apex_path)):
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
    print(dl.describe(samples))
    gone = missing(samples)
    for what, path, n, where in gone:
        print(f"  missing {what}: {path}" + (f"  ({n} samples, first {where})" if n > 1 else f"  ({where})"))
    hit = {(r.subject, r.filename, r.onset) for r in samples.table.itertuples()
           if not (os.path.isfile(r.onset_path) and os.path.isfile(r.apex_path))}
    print(f"{len(gone)} missing frames or folders, {len(hit)} of {len(samples.table)} samples affected")
    return len(hit)


def show(samples, cache_dir, n, out, encoding="fixed", face="auto", flow="ipol"):
    """Onset and apex crops and the five network inputs of sample n, side by side."""
    plt = utils.pyplot()
    row = samples.table.iloc[n].to_dict()
    if face != "auto":
        row["face"] = face
    keys = ["onset", "apex", "u", "v", "F", "S", "G"]
    c = dl.read_cache(dl.cache_file(cache_dir, row), dl.cache_settings(row, encoding, flow), keys)
    if c is None:
        raise dl.DataError(f"{dl.cache_file(cache_dir, row)}: no valid cache; run without --show first")
    titles = ["onset", "apex", "u (x16+128)", "v (x16+128)", "F magnitude", "S strain", "G gray apex"]
    fig, axes = plt.subplots(1, len(keys), figsize=(2.2 * len(keys), 2.6))
    for ax, k, t in zip(axes, keys, titles):
        ax.imshow(c[k], cmap=None if c[k].ndim == 3 else "gray", vmin=0, vmax=255)
        ax.set_title(t, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{dl.sample_id(row)}  ({samples.classes[row['label']]})", fontsize=10)
    fig.tight_layout()
    utils.save_png(fig, out, dpi=90)
    print(f"wrote {out}")


def run(args):
    cache_dir = args.cache_dir or os.path.join("cache", args.catego)
    samples = dl.read_samples(args.csv_path, args.root, args.catego, args.num_classes, args.classes,
                              args.parts)
    if args.check:
        return 1 if check(samples) else 0
    if args.show is not None:
        if not 0 <= args.show < len(samples.table):
            raise dl.DataError(f"--show {args.show}: the dataset has samples 0..{len(samples.table) - 1}")
        build_caches(dl.Samples(samples.table.iloc[[args.show]], samples.classes, samples.catego, []),
                     cache_dir, args.encoding, args.face, 1, flow=args.flow)
        show(samples, cache_dir, args.show, args.out, args.encoding, args.face, args.flow)
        return 0
    print(dl.describe(samples))
    failures = build_caches(samples, cache_dir, args.encoding, args.face, args.workers, flow=args.flow)
    if failures:
        print(failure_table(failures))
    print(f"caches in {cache_dir}: {len(samples.table) - len(failures)} of {len(samples.table)} samples")
    return 1 if failures else 0


def main(argv=None):
    args = parser().parse_args(argv)
    return utils.cli(lambda: run(args), "interrupted: finished caches are kept; rerun to continue")


if __name__ == "__main__":
    sys.exit(main())
