"""
Building the feature caches: every sample's inputs computed once (alignment, TV-L1 flow, the
encoded images; or a precomputed flow file read) and written as one .npz, in worker processes.
save_preprocess_weight.py runs it over a dataset, and train.py for any cache that is missing.

    import caches, dataloader as dl
    samples = dl.read_samples("CASME2-coding-20140508.xlsx", "CASME2_RAW", "CASME")
    failures = caches.build_caches(samples, "cache/CASME", workers=2)   # [(sample id, reason)]
    if failures: print(caches.failure_table(failures))

Where a cache lives, what it holds and when it is valid: cache_jobs, read_cache, write_cache
below, and docs/reproducibility.md. A cache is one .npz per sample, valid only for the same
preprocessing settings and the same sources (frame numbers and frame files: see frame_sources).
"""
import collections
import errno
import hashlib
import json
import os
import re
import zipfile
import zlib

import numpy as np

from datasets import DataError, sample_id
import preprocess as pp
import utils


def path_part(text):
    """`text` as one path component that stays inside its folder: every character but letters,
    digits, `.`, `_` and `-` is percent-encoded (a separator too: no absolute path, no `..`), and
    so is a leading dot (no hidden file, no `.`). Two texts never share a name; past 100
    characters the name is cut to 80 and 16 hex digits of its sha256 are added."""
    name = re.sub(r"[^\w.-]|^\.", lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), str(text))
    if len(name) > 100:   # "+" is always encoded above, so it marks a cut name
        name = name[:80] + "+" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return name or "%"   # (an empty text; "%" alone is never an encoding)


def settings_tag(settings):
    """The folder of one set of settings: face-encoding-flow (a flow file's: its kind and
    encoding) and 8 hex digits of every setting, so caches of other settings live beside these
    and switching back rebuilds nothing."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    named = [settings[k] for k in ("face", "kind", "encoding", "flow") if k in settings]
    return path_part("-".join(map(str, named + [digest])))


def cache_file(cache_dir, row, settings):
    """<cache_dir>/<settings tag>/<subject>/<filename>_<onset>.npz, each part made safe by
    path_part: always under cache_dir, whatever the sheet says (a CUSTOM clip may be an absolute
    path). The onset tells apart the micro-expressions of one CAS(ME)^3 task video."""
    return os.path.join(cache_dir, settings_tag(settings), path_part(row["subject"]),
                        f"{path_part(row['filename'])}_{int(row['onset'])}.npz")


def cache_settings(row, encoding, flow="ipol"):
    if row.get("flow_path"):   # a precomputed flow file (FLOWS): no face or flow settings apply
        return pp.file_settings(row["flow_kind"], encoding)
    return pp.settings(row["face"], encoding, flow)


def source_paths(row):
    """The files a sample's cache is made from: its onset and apex frames, or its flow file and
    apex image (if any)."""
    flow = row.get("flow_path")
    files = (flow, row["apex_path"]) if flow else (row["onset_path"], row["apex_path"])
    return [p for p in files if p]


def cache_jobs(samples, cache_dir, encoding, face, flow):
    """(row, cache path, settings, sources) of every sample; a --face other than auto overrides
    the face mode the dataset table gives the row."""
    for row, sources in zip(samples.table.to_dict("records"), frame_sources(samples)):
        if face != "auto":
            row["face"] = face
        settings = cache_settings(row, encoding, flow)
        yield row, cache_file(cache_dir, row, settings), settings, sources


def frame_sources(samples):
    """Per row, what its cache is made from: onset and apex numbers, sha256 of the two frame files
    (of a FLOWS sample: sha256 of its flow file and of its apex image, None without one).
    Content, not size + mtime: a copy or rsync of a dataset changes mtimes, and two small images
    hash in well under a millisecond. Hashed once per Samples, for caches and run folders alike."""
    def one(r):
        if r.get("flow_path"):
            return dict(flow_sha256=utils.sha256(r["flow_path"]),
                        apex_sha256=utils.sha256(r["apex_path"]) if r["apex_path"] else None)
        return dict(onset=int(r["onset"]), apex=int(r["apex"]), onset_sha256=utils.sha256(r["onset_path"]),
                    apex_sha256=utils.sha256(r["apex_path"]))
    if samples.sources is None or len(samples.sources) != len(samples.table):
        samples.sources = [one(r) for r in samples.table.to_dict("records")]
    return samples.sources


# why read_cache gives no arrays -> how load_streams says it
CACHE_FAULTS = {"missing": "missing", "corrupt": "truncated or corrupt",
                "settings": "made with other settings", "sources": "made from other frames or sheet row"}


class CacheError(DataError):
    """A cache that is there but cannot be read (permission, a disk error)."""


def read_cache(path, want_settings, keys, sources=None, why=None):
    """The arrays `keys` of a cache, or None when it has to be built; then the reason, a key of
    CACHE_FAULTS, is appended to the list `why`, if given: missing; corrupt (truncated, not an
    .npz, an entry missing or not a 227x227 image of its type); settings (made with others); sources
    (given `sources`: made from other frames or sheet row). A cache that is there but cannot be
    read raises CacheError naming it: rebuilding would hide a disk fault or overwrite a file this
    user may not own. Nothing in it can run code (no pickles)."""
    def fault(reason):
        if why is not None:
            why.append(reason)
        return None

    try:
        f = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError):
        return fault("missing")
    except OSError as e:
        raise CacheError(f"{path}: cannot read cache ({e.strerror or e})") from None
    try:
        with f, np.load(f) as z:
            meta = json.loads(str(z["meta"]))
            if meta["settings"] != json.loads(json.dumps(want_settings)):
                return fault("settings")
            if sources is not None and meta.get("sources") != sources:
                return fault("sources")
            arrays = {k: z[k] for k in keys}
    except OSError as e:
        if e.errno not in (None, errno.EINVAL):   # EINVAL: a seek past a truncated zip's start
            raise CacheError(f"{path}: cannot read cache ({e.strerror or e})") from None
        return fault("corrupt")
    except (ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile, zlib.error):
        return fault("corrupt")   # (np.load of an .npy gives an array, which has no `with`)
    # images are uint8; "flow" is the float32 (u, v) they were encoded from
    if any(a.dtype != (np.float32 if k == "flow" else np.uint8) or a.shape[:2] != (pp.SIZE, pp.SIZE)
           or a.ndim not in (2, 3) for k, a in arrays.items()):
        return fault("corrupt")
    return arrays


def write_cache(path, feats, settings, sources, row):
    """One sample's cache, written atomically: its arrays and what read_cache compares."""
    meta = json.dumps({"settings": settings, "sources": sources, "files": source_paths(row)})
    utils.atomic_write(path, lambda f: np.savez(f, meta=meta, **feats))


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
        return job, None, f"{source_paths(row)[0]}: {kind}: {why}"


def _write_one(job, feats):
    """Write one pair's cache atomically; an error line or None."""
    row, path, settings, sources = job
    try:
        write_cache(path, feats, settings, sources, row)
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
        raise DataError(f"{cache_dir}: --cache_dir is a file, not a folder")
    why, jobs, failures = [], [], []   # read_cache appends why each cache is to be built
    for job in cache_jobs(samples, cache_dir, encoding, face, flow):
        try:
            if read_cache(*job[1:3], ["u"], job[3], why) is None:
                jobs.append(job)
        except CacheError as e:   # there but unreadable: that sample fails, left as it is
            failures.append((sample_id(job[0]), str(e)))
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
                failures.append((sample_id(job[0]), err))
    return failures


def failure_table(failures):
    """The samples build_caches could not preprocess, one line each with the reason."""
    width = max(len(s) for s, _ in failures)
    return "\n".join([f"\n{len(failures)} samples failed:"]
                     + [f"  {s:<{width}}  {why}" for s, why in sorted(failures)])
