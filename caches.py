"""
Building the feature caches: every sample's inputs computed once (alignment, TV-L1 flow, the
encoded images; or a precomputed flow file read) and written as one .npz, in worker processes.
save_preprocess_weight.py runs it over a dataset, and train.py for any cache that is missing.

    import caches, dataloader as dl
    samples = dl.read_samples("CASME2-coding-20140508.xlsx", "CASME2_RAW", "CASME")
    failures = caches.build_caches(samples, "cache/CASME", workers=2)   # [(sample id, reason)]
    if failures: print(caches.failure_table(failures))

Where a cache lives, what it holds and when it is valid: dataloader (cache_jobs, read_cache,
write_cache) and docs/reproducibility.md.
"""
import collections
import os

import dataloader as dl
import preprocess as pp
import utils


def _prepare_one(job):
    """All inputs of one pair, pp.features (in a worker): (job, features or None, error). Each
    worker computes whole pairs: the flow is most of a pair's time (the IPOL flow runs on one
    thread, see pp.tvl1_ipol), so the pairs of N workers run on N cores."""
    row, path, settings, _ = job
    try:
        if row.get("flow_path"):   # FLOWS: the flow was computed elsewhere
            feats = pp.flow_file_features(row["flow_path"], row["apex_path"], settings.get("encoding"))
            return job, feats, None
        onset, apex = pp.read_image(row["onset_path"]), pp.read_image(row["apex_path"])
        return job, pp.features(onset, apex, settings["face"], settings["encoding"], row["onset_path"],
                                settings["flow"]), None
    except pp.PreprocessError as e:
        return job, None, str(e)
    except Exception as e:   # whatever OpenCV or dlib raise on one pair fails that pair, not the pool
        kind = type(e).__name__ if type(e).__module__ == "builtins" else \
            f"{type(e).__module__}.{type(e).__name__}"   # cv2.error
        why = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
        return job, None, f"{dl.source_paths(row)[0]}: {kind}: {why}"


def _write_one(job, feats):
    """Write one pair's cache atomically; an error line or None."""
    row, path, settings, sources = job
    try:
        dl.write_cache(path, feats, settings, sources, row)
        return None
    except OSError as e:   # e.g. a full or read-only cache folder: a failure of this sample
        return f"{e.filename or path}: cannot write cache ({e.strerror or e})"


# What the workers' forkserver imports once for all of them (utils.pool): this module by name,
# whether or not it runs as __main__, brings torch, OpenCV and pandas.
PRELOAD = ["caches", "dlib"]

# why a cache is rebuilt, as build_caches says it
REBUILT = {"sources": "their sheet row or frames changed", "corrupt": "truncated or corrupt",
           "settings": "made with other settings"}


def build_caches(samples, cache_dir, encoding="fixed", face="auto", workers=1, quiet=False, flow="ipol"):
    """Compute and write the cache of every sample that lacks a valid one.
    Returns [(subject/filename@onset, reason)] of the failures; finished caches are never lost.
    Workers prepare whole pairs (pp.features: alignment, flow, encoding); this process writes
    each cache as its pair arrives, so an interrupted run keeps every cache written before it
    stopped. The workers import the caller's main module, as those of any forkserver do: a
    script of your own that calls this runs its work under `if __name__ == "__main__":`."""
    if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise dl.DataError(f"{cache_dir}: --cache_dir is a file, not a folder")
    why, jobs, failures = [], [], []   # read_cache appends why each cache is to be built
    for job in dl.cache_jobs(samples, cache_dir, encoding, face, flow):
        try:
            if dl.read_cache(*job[1:3], ["u"], job[3], why) is None:
                jobs.append(job)
        except dl.CacheError as e:   # there but unreadable: that sample fails, left as it is
            failures.append((dl.sample_id(job[0]), str(e)))
    if not quiet:
        rebuilt = collections.Counter(w for w in why if w != "missing")
        print(f"caches: {len(samples.table) - len(jobs) - len(failures)} valid in {cache_dir}, "
              f"{len(jobs)} to build"
              + (" (" + "; ".join(f"{n} rebuilt: {REBUILT[w]}" for w, n in rebuilt.items()) + ")"
                 if rebuilt else "") + (f", {len(failures)} unreadable" if failures else ""))
    if not jobs:
        return failures
    workers = max(1, min(workers, len(jobs)))
    with utils.pool(workers, PRELOAD) as pool:
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
