"""
Datasets, coding sheets, feature caches and LOSO splits.

    import dataloader as dl
    samples = dl.read_samples("CASME2-coding-20140508.xlsx", "CASME2_RAW", "CASME")   # 5 classes
    samples = dl.read_samples(None, "SMIC/HS", "SMIC")          # no sheet: labels from the folders
    samples = dl.read_samples(["CASME2-coding-20140508.xlsx", "SAMM_Micro_FACS_Codes_v2.xlsx"],
                              ["CASME2_RAW", "SAMM", "SMIC/HS"], "COMPOSITE")    # MEGC 2019
    dl.build_caches(samples, "cache/CASME", workers=2)        # what save_preprocess_weight.py runs
    data = dl.load_streams(samples, "cache/CASME", ["F", "G"])  # uint8 streams, read once
    for subject, train_idx, test_idx in dl.loso_splits(data.subjects): ...

Everything that differs per dataset lives in the DATASETS table below; the functions are shared.
Sheets, layouts and class sets: ../shared/reference/dssn-facts.md, section 5.
"""
import argparse
import collections
import glob
import json
import math
import os
import re
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import pandas as pd
from tqdm import tqdm

import preprocess as pp

# Canonical column -> the names it has in the official sheets and in the port's hand-made CSVs
# (`Subject, Filename, Onset, Apex, Estimated Emotion`).
COLUMNS = {
    "subject": ["Subject"],
    "filename": ["Filename"],
    "onset": ["OnsetFrame", "Onset Frame", "Onset"],
    "apex": ["ApexFrame", "Apex Frame", "Apex"],
    "offset": ["OffsetFrame", "Offset Frame", "Offset"],
    "emotion": ["Estimated Emotion", "Emotion"],
}
REQUIRED = ("subject", "filename", "onset", "apex", "emotion")
# Frames are matched by number with any of these extensions (SMIC NIR/VIS copies are .bmp or .jpg).
IMAGE_EXTS = ("jpg", "jpeg", "png", "bmp", "tif", "tiff")

# Class sets: class -> the emotions (lower case, as in the sheet or the folder name) it takes.
# The 3-class sets are MEGC 2019's composite mapping (facts 5). A dataset's first set is its default.
NEG_POS_SUR = {"negative": ["negative"], "positive": ["positive"], "surprise": ["surprise"]}
DATASETS = {
    # CASME II: CASME2-coding-20140508.xlsx (two blank columns), subjects "01".."26".
    "CASME": dict(
        prefix="casme2", sheet="CASME2-coding-*.xlsx", subject_width=2,
        clip="sub{subject}/{filename}", example="sub01/EP02_01f/img46.jpg",
        root="the folder holding sub01..sub26 (raw, or the `Cropped` one)",
        # (frame name, face handling): raw frames need alignment, `Cropped` reg_img ones do not.
        frames=[("img{n}.jpg", "dlib"), ("reg_img{n}.jpg", "none")],
        classes={5: {"happiness": ["happiness"], "disgust": ["disgust"], "repression": ["repression"],
                     "surprise": ["surprise"], "others": ["others"]},
                 3: {"negative": ["disgust", "repression"], "positive": ["happiness"],
                     "surprise": ["surprise"]}},
    ),
    # SAMM: SAMM_Micro_FACS_Codes_v2.xlsx, 13 note rows above the header (found by read_sheet).
    # Frame numbers are unpadded in the sheet and padded (006_05562.jpg) in most copies of the
    # frames, not in all: matching by number takes both.
    "SAMM": dict(
        prefix="samm", sheet="SAMM_Micro_FACS_Codes_v2.xlsx", subject_width=3,
        clip="{subject}/{filename}", example="006/006_1_2/006_05562.jpg",
        root="the folder holding 006..036",
        frames=[("{subject}_{n:05d}.jpg", "dlib")],
        classes={5: {"anger": ["anger"], "contempt": ["contempt"], "happiness": ["happiness"],
                     "surprise": ["surprise"], "other": ["other"]},
                 3: {"negative": ["anger", "contempt", "disgust", "fear", "sadness"],
                     "positive": ["happiness"], "surprise": ["surprise"]}},
    ),
    # SMIC (HS, VIS or NIR): no coding sheet. The clip template's {emotion} folder is the label,
    # onset / offset are the clip's first / last frame, and with no apex annotation the middle
    # frame stands in for it (the usual choice, facts 5).
    "SMIC": dict(
        prefix="smic", sheet=None, subject_width=0,
        clip="{subject}/micro/{emotion}/{filename}", example="s1/micro/negative/s1_ne_01/image000123.bmp",
        root="the HS, VIS or NIR folder holding s1, s2, ...",
        frames=[("image{n}.bmp", "dlib"), ("reg_image{n}.bmp", "none")],
        classes={3: NEG_POS_SUR},
    ),
    # MEGC 2019 composite: each part read with its own 3-class set; subjects get the part's
    # prefix so LOSO runs over all 68 subjects (facts 5).
    "COMPOSITE": dict(parts=["CASME", "SAMM", "SMIC"], classes={3: NEG_POS_SUR}),
}


class DataError(Exception):
    """Bad input: the message is one line naming the file, row or column."""


def class_set(catego, num_classes=None):
    """{class: [emotions]} of a dataset; num_classes None means the dataset's default set."""
    sets = DATASETS[catego]["classes"]
    if num_classes is None:
        return next(iter(sets.values()))
    if num_classes not in sets:
        raise DataError(f"--num_classes {num_classes} does not fit {catego}: "
                        f"its class sets have {' or '.join(map(str, sets))} classes")
    return sets[num_classes]


def as_list(x):
    """A path argument as a list of str: None -> [], "a" -> ["a"], ["a", "b"] as is."""
    if x is None:
        return []
    return [os.fspath(x)] if isinstance(x, (str, os.PathLike)) else list(map(os.fspath, x))


def read_sheet(path):
    """A coding sheet (.xlsx or .csv) as strings with canonical column names. The header row is
    found, not assumed: SAMM's sheet has 13 note rows above it."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: coding sheet not found")
    try:
        raw = pd.read_excel(path, header=None, dtype=str) if path.lower().endswith((".xlsx", ".xls")) \
            else pd.read_csv(path, header=None, dtype=str)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: sheet is empty") from None
    except Exception as e:
        why = (str(e).strip().splitlines() or [""])[0]   # one line, whatever the reader says
        raise DataError(f"{path}: cannot read sheet ({type(e).__name__}: {why})") from None
    if raw.dropna(how="all").empty:
        raise DataError(f"{path}: sheet is empty")
    aliases = {a.lower(): c for c, names in COLUMNS.items() for a in names}
    for row in range(min(len(raw), 50)):
        names = [str(x).strip() for x in raw.iloc[row]]
        found = {aliases[n.lower()]: i for i, n in reversed(list(enumerate(names))) if n.lower() in aliases}
        if {"subject", "filename"} <= found.keys():
            break
    else:
        raise DataError(f"{path}: no header row with columns Subject and Filename")
    missing = [COLUMNS[c][0] for c in REQUIRED if c not in found]
    if missing:
        raise DataError(f"{path}: missing column {', '.join(missing)} (header on row {row + 1}: "
                        f"{', '.join(n for n in names if n != 'nan')})")
    df = raw.iloc[row + 1:, list(found.values())]
    df.columns = list(found.keys())
    df = df.dropna(how="all").reset_index(drop=False)
    if df.empty:
        raise DataError(f"{path}: sheet has a header but no rows")
    df.attrs["first_row"] = row + 2   # sheet row (1-based) right below the header
    df["where"] = [f"{path}: row {i + 1}" for i in df.pop("index")]   # 1-based sheet rows
    return df


def _template_regex(template, **fixed):
    """Regex of a name template: {n} -> a frame number (any zero-padding), a field given in
    `fixed` -> that text, any other field -> one path component, captured by name."""
    out = ""
    for literal, field, _, _ in string.Formatter().parse(template):
        out += re.escape(literal)
        if field is not None:
            out += re.escape(fixed[field]) if field in fixed else \
                r"(?P<n>\d+)" if field == "n" else rf"(?P<{field}>[^/]+)"
    return out


def list_frames(folder, catego, subject):
    """{frame number: (path, face mode)} of a clip folder, sorted by number ({} if it is missing).
    Frames are matched by number, so zero-padding and image extension don't matter; where two
    namings hold the same number, the first in the table wins."""
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    found, exts = {}, "|".join(IMAGE_EXTS)
    for template, face in DATASETS[catego]["frames"]:
        rx = re.compile(_template_regex(os.path.splitext(template)[0], subject=subject) + rf"\.(?:{exts})",
                        re.IGNORECASE)
        for name in names:
            m = rx.fullmatch(name)
            if m:
                found.setdefault(int(m["n"]), (os.path.join(folder, name), face))
    return dict(sorted(found.items()))


def _listing(root):
    names = sorted(os.listdir(root))
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "nothing"


def read_folders(root, catego):
    """The samples of a dataset without a coding sheet (SMIC): one per clip folder, subject and
    emotion read off the folder names by the table's `clip` template."""
    spec = DATASETS[catego]
    rx = re.compile(_template_regex(spec["clip"]))
    rows = []
    for folder in sorted(glob.glob(os.path.join(glob.escape(root), re.sub(r"\{[^}]*\}", "*", spec["clip"])))):
        m = rx.fullmatch(os.path.relpath(folder, root).replace(os.sep, "/"))
        if m and os.path.isdir(folder):
            rows.append(dict(m.groupdict(), folder=folder, where=folder))
    if not rows:
        raise DataError(f"{root}: no {catego} clip folders like {os.path.dirname(spec['example'])}/ "
                        f"(root = {spec['root']}; it holds {_listing(root)})")
    return pd.DataFrame(rows)


def _frame_number(value):
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        return None


def _subject(value, width):
    """Subject as the folders name it: "1" or "1.0" from a numeric cell -> "01" (CASME II)."""
    s = str(value).strip()
    m = re.fullmatch(r"(\d+)(?:\.0*)?", s)
    return m[1].zfill(width) if m else s


@dataclass
class Samples:
    """One row per usable sample: dataset, subject, filename, emotion, label, onset/apex, face."""
    table: pd.DataFrame
    classes: list
    catego: str
    notes: list   # what was dropped or guessed, to print


def read_samples(csv_path, root, catego, num_classes=None):
    """The usable samples of a dataset. csv_path and root are a path or a list of paths (the
    composite takes the CASME II and SAMM sheets and the CASME II, SAMM and SMIC folders, in
    that order; SMIC has no sheet). num_classes None = the dataset's default class set."""
    if catego not in DATASETS:
        raise DataError(f"--catego {catego!r} unknown: expected one of {', '.join(DATASETS)}")
    sheets, roots = as_list(csv_path), as_list(root)
    parts = DATASETS[catego].get("parts", [catego])
    need = [p for p in parts if DATASETS[p]["sheet"]]
    if len(sheets) != len(need) or len(roots) != len(parts):
        def n(k, what):
            return f"{k} {what}{'' if k == 1 else 's'}"
        raise DataError(f"--catego {catego} takes {n(len(need), 'coding sheet')}"
                        + (f" ({', '.join(need)})" if len(need) > 1 else "")
                        + f" and {n(len(parts), 'dataset folder')}"
                        + (f" ({', '.join(parts)}, in this order)" if len(parts) > 1 else "")
                        + (" (SMIC has no sheet: the folders are the labels)" if "SMIC" in parts else "")
                        + f"; got {n(len(sheets), 'sheet')} and {n(len(roots), 'folder')}")
    classes, composite = list(class_set(catego, num_classes)), "parts" in DATASETS[catego]
    sheets, tables, notes = iter(sheets), [], []
    for part, part_root in zip(parts, roots):
        s = _read_one(next(sheets) if DATASETS[part]["sheet"] else None, part_root, part,
                      len(classes) if composite else num_classes)
        t = s.table
        if composite:   # subjects unique across datasets for LOSO; labels by class name
            t["subject"] = DATASETS[part]["prefix"] + "_" + t.subject
            t["label"] = [classes.index(s.classes[k]) for k in t.label]
            notes += [f"{part}: {note}" for note in s.notes]
        else:
            notes = s.notes
        tables.append(t)
    return Samples(pd.concat(tables, ignore_index=True), classes, catego, notes)


def _read_one(csv_path, root, catego, num_classes):
    spec, mapping = DATASETS[catego], class_set(catego, num_classes)
    classes = list(mapping)
    to_class = {e: c for c, emotions in mapping.items() for e in emotions}
    if not os.path.isdir(root):
        raise DataError(f"{root}: {catego} dataset folder not found (expected {spec['root']})")
    df = read_sheet(csv_path) if spec["sheet"] else read_folders(root, catego)
    source = csv_path or root
    rows, seen, dropped, middle, empty = [], {}, collections.Counter(), [], []
    for r in df.to_dict("records"):
        subject, filename = _subject(r["subject"], spec["subject_width"]), str(r["filename"]).strip()
        if (subject, filename) in seen:
            raise DataError(f"{r['where']}: duplicate sample {subject}/{filename} "
                            f"(first at {seen[subject, filename]})")
        seen[subject, filename] = r["where"]
        emotion = str(r["emotion"]).strip().lower()
        if emotion not in to_class:
            dropped["(blank)" if emotion in ("", "nan") else emotion] += 1
            continue
        folder = r.get("folder") or os.path.join(root, spec["clip"].format(subject=subject, filename=filename))
        frames = list_frames(folder, catego, subject)
        if spec["sheet"]:
            onset, apex, offset = (_frame_number(r.get(k)) for k in ("onset", "apex", "offset"))
            if onset is None:
                raise DataError(f"{r['where']}: onset frame {r['onset']!r} is not a number")
        elif frames:   # no sheet: the clip folder is the clip, from its first to its last frame
            onset, apex, offset = min(frames), None, max(frames)
        else:
            empty.append(folder)
            continue
        if apex is None:   # CASME II writes "/" for one unknown apex, SMIC has none: middle frame
            if offset is None:
                raise DataError(f"{r['where']}: apex {r['apex']!r} is not a number and there is no offset")
            # SMIC: the middle of the listed frames (the same frame unless the numbering has gaps)
            apex = (onset + offset) // 2 if spec["sheet"] else list(frames)[(len(frames) - 1) // 2]
            middle.append(f"{subject}/{filename}")
        # A missing frame keeps the table's first naming, so --check can say what it looked for.
        name, face = spec["frames"][0]
        on_path, face = frames.get(onset, (os.path.join(folder, name.format(n=onset, subject=subject)), face))
        ap_path, _ = frames.get(apex, (os.path.join(folder, name.format(n=apex, subject=subject)), face))
        rows.append(dict(dataset=catego, subject=subject, filename=filename, emotion=emotion,
                         label=classes.index(to_class[emotion]), onset=onset, apex=apex,
                         onset_path=on_path, apex_path=ap_path, face=face))
    notes = []
    if dropped:
        notes.append(f"dropped {sum(dropped.values())} (not in the {len(classes)}-class set): " +
                     ", ".join(f"{k} {v}" for k, v in dropped.most_common()))
    if empty:
        notes.append(f"dropped {len(empty)} clip folders without frames: {', '.join(empty[:5])}"
                     + (", ..." if len(empty) > 5 else ""))
    if middle and not spec["sheet"]:
        notes.append(f"no apex annotation: the middle frame between onset and offset is the apex "
                     f"of all {len(middle)} clips")
    elif middle:
        notes.append(f"apex missing, middle frame used: {', '.join(middle)}")
    if not rows and empty:
        example = spec["frames"][0][0].format(n=123, subject="")
        raise DataError(f"{root}: no clip folder holds frames like {example} "
                        f"(e.g. {empty[0]})")
    if not rows:
        raise DataError(f"{source}: no sample has an emotion of the {len(classes)}-class set {classes}")
    if not any(os.path.isfile(r["onset_path"]) for r in rows):
        raise DataError(f"{root}: no onset frame of {source} is there (expected e.g. "
                        f"{rows[0]['onset_path']}; root = {spec['root']}; it holds {_listing(root)})")
    table = pd.DataFrame(rows)
    if table.label.nunique() < 2:
        raise DataError(f"{source}: only one class ({classes[table.label[0]]}) is present; need two or more")
    return Samples(table, classes, catego, notes)


def describe(samples):
    """Samples per class (with the emotions each class takes), per dataset and per subject."""
    t, classes = samples.table, samples.classes
    datasets = list(dict.fromkeys(t["dataset"])) if "dataset" in t else [samples.catego]
    per_class = t.label.value_counts().reindex(range(len(classes)), fill_value=0)
    lines = [f"{samples.catego}: {len(t)} samples, {t.subject.nunique()} subjects, "
             f"{len(classes)}-class set"]
    for k, n in per_class.items():
        takes = "; ".join((f"{d} " if len(datasets) > 1 else "") + ", ".join(class_set(d, len(classes))[classes[k]])
                          for d in datasets)
        lines.append(f"  {classes[k]:<12} {n:>4}   <- {takes}")
    if len(datasets) > 1:
        for d, g in t.groupby("dataset", sort=False):
            counts = g.label.value_counts().reindex(range(len(classes)), fill_value=0)
            lines.append(f"  {d:<12} {len(g):>4}   {g.subject.nunique()} subjects, "
                         + "/".join(map(str, counts)) + " " + "/".join(c[:3] for c in classes))
    per_subject = t.subject.value_counts().sort_index()
    lines.append("  per subject: " + ", ".join(f"{s}:{n}" for s, n in per_subject.items()))
    if (per_subject == 1).any():   # allowed, but its LOSO fold scores a single prediction
        lines.append("  subjects with a single sample: " + ", ".join(per_subject.index[per_subject == 1]))
    return "\n".join(lines + [f"  {n}" for n in samples.notes])


def missing(samples):
    """Every absent input, once, as (what, path, samples affected): a missing subject or clip
    folder is one line, not two missing frames for each of its samples."""
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
            gone.setdefault((what, top), set()).add((r.subject, r.filename))
    return [(what, path, len(s)) for (what, path), s in sorted(gone.items(), key=lambda kv: kv[0][1])]


# ---------------------------------------------------------------------------------------------
# caches: one .npz per sample, written atomically, valid only for the same preprocessing settings

def cache_file(cache_dir, row):
    return os.path.join(cache_dir, row["subject"], f"{row['filename']}.npz")


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path, write):
    """Call write(fileobj) on a temp file beside `path`, then rename it into place: a crash or
    Ctrl-C never leaves a half-written `path`."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cache_settings(row, encoding, flow="ipol"):
    return pp.settings(row["face"], encoding, flow)


def read_cache(path, want_settings, keys):
    """The arrays `keys` of a cache, or None if it is missing, truncated or made otherwise."""
    try:
        with np.load(path) as z:
            if json.loads(str(z["meta"]))["settings"] != json.loads(json.dumps(want_settings)):
                return None
            return {k: z[k] for k in keys}
    except Exception:   # missing, truncated, not an npz, missing keys: all mean "rebuild"
        return None


def _crop_one(job):
    """Read and align one pair (in a worker): (job, (onset, apex) crops or None, error)."""
    row, path, settings = job
    try:
        onset, apex = pp.read_image(row["onset_path"]), pp.read_image(row["apex_path"])
        return job, pp.crop_pair(onset, apex, settings["face"], row["onset_path"]), None
    except pp.PreprocessError as e:
        return job, None, str(e)


def _write_one(job, on, ap, u, v):
    """Encode one pair's inputs and write its cache atomically; an error line or None."""
    row, path, settings = job
    try:
        feats = pp.encode(on, ap, u, v, settings["encoding"])
        meta = json.dumps({"settings": settings, "onset": row["onset_path"], "apex": row["apex_path"]})
        atomic_write(path, lambda f: np.savez(f, meta=meta, **feats))
        return None
    except OSError as e:   # e.g. a full or read-only cache folder: a failure of this sample
        return f"{e.filename or path}: cannot write cache ({e.strerror or e})"


FLOW_BATCH = 8   # pairs whose IPOL flow is computed together (one torch call)


def build_caches(samples, cache_dir, encoding="fixed", face="auto", workers=1, quiet=False, flow="ipol"):
    """Compute and write the cache of every sample that lacks a valid one.
    Returns [(subject/filename, reason)] of the failures; finished caches are never lost.
    Workers read and align the frames; this process computes the flow FLOW_BATCH pairs at a
    time (a batched torch call uses the cores better than one pair per process) and writes."""
    jobs = []
    for row in samples.table.to_dict("records"):
        if face != "auto":
            row["face"] = face
        settings = cache_settings(row, encoding, flow)
        path = cache_file(cache_dir, row)
        if read_cache(path, settings, ["u"]) is None:
            jobs.append((row, path, settings))
    if not quiet:
        print(f"caches: {len(samples.table) - len(jobs)} valid in {cache_dir}, {len(jobs)} to build")
    failures = []
    if not jobs:
        return failures
    pending = []

    def flush():
        uv = pp.flows([pp.gray(on) for _, (on, _) in pending], [pp.gray(ap) for _, (_, ap) in pending], flow)
        for (job, (on, ap)), (u, v) in zip(pending, uv):
            err = _write_one(job, on, ap, u, v)
            if err:
                failures.append((f"{job[0]['subject']}/{job[0]['filename']}", err))
        pending.clear()

    workers = max(1, min(workers, len(jobs)))
    # fork shares the loaded dlib model
    with get_context("fork").Pool(workers) if workers > 1 else _Serial() as pool:
        # the bar counts aligned pairs; their flow follows in batches of FLOW_BATCH
        for job, crops, err in progress(pool.imap_unordered(_crop_one, jobs), "preprocess", len(jobs),
                                        "pair", disable=quiet):
            if err:
                failures.append((f"{job[0]['subject']}/{job[0]['filename']}", err))
                continue
            pending.append((job, crops))
            if len(pending) == FLOW_BATCH:
                flush()
        if pending:
            flush()
    return failures


def failure_table(failures):
    """The samples build_caches could not preprocess, one line each with the reason."""
    width = max(len(s) for s, _ in failures)
    return "\n".join([f"\n{len(failures)} samples failed:"] + [f"  {s:<{width}}  {why}" for s, why in sorted(failures)])


class _Serial:
    """Pool stand-in for one worker: no fork, easier to debug."""
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap_unordered(self, fn, jobs):
        return map(fn, jobs)


# ---------------------------------------------------------------------------------------------
# in-memory streams and LOSO

@dataclass
class Streams:
    """x: uint8 (S, N, 227, 227, 3) - stream-major, channels last, so one stream's batch is a
    contiguous gather that torch sees as channels_last NCHW without a copy."""
    x: np.ndarray
    y: np.ndarray
    subjects: np.ndarray
    filenames: np.ndarray


def load_streams(samples, cache_dir, image_mode, encoding="fixed", face="auto", flow="ipol"):
    """Read every cache once and build the (u, v, X) streams for `image_mode` (e.g. ["F", "G"])."""
    for m in image_mode:
        if m not in pp.MODES:
            raise DataError(f"--image_mode {m!r} unknown: expected some of {', '.join(pp.MODES)}")
    t = samples.table
    x = np.empty((len(image_mode), len(t), pp.SIZE, pp.SIZE, 3), np.uint8)
    for i, row in enumerate(t.to_dict("records")):
        if face != "auto":
            row["face"] = face
        path = cache_file(cache_dir, row)
        c = read_cache(path, cache_settings(row, encoding, flow), ["u", "v", *image_mode])
        if c is None:
            raise DataError(f"{path}: cache missing or made with other settings "
                            f"(run save_preprocess_weight.py with the same --cache_dir)")
        for s, m in enumerate(image_mode):
            x[s, i] = pp.stream(c, m)
    return Streams(x, t.label.to_numpy(np.int64, copy=True), t.subject.to_numpy(str), t.filename.to_numpy(str))


def loso_splits(subjects):
    """Leave-one-subject-out: (subject, train indices, test indices) per subject, sorted."""
    subjects = np.asarray(subjects)
    for s in sorted(set(subjects.tolist())):
        yield s, np.flatnonzero(subjects != s), np.flatnonzero(subjects == s)


# ---------------------------------------------------------------------------------------------
# command-line helpers shared by every script: flag ranges checked at parse time, progress output

def int_range(lo, hi=None):
    """An argparse type: an integer in lo..hi, else argparse's one-line error naming the flag
    (`train.py: error: argument --epochs: must be 1 or more, got 0`), before any work starts."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            want = f"{lo} or more" if hi is None else f"{lo}..{hi}"
            raise argparse.ArgumentTypeError(f"must be {want}, got {v}")
        return v
    parse.__name__ = f"int {lo}.." + ("" if hi is None else str(hi))
    return parse


positive_int = int_range(1)
nonneg_int = int_range(0)


def positive_float(text):
    """An argparse type: a finite number above 0 (e.g. a learning rate)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return v


def shard(text):
    """An argparse type for --shard I/N: (I, N) with 1 <= I <= N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N (e.g. 2/4), got {text!r}")
    return i, n


class progress:
    """Progress of a loop: a tqdm bar on a terminal; elsewhere (a SLURM log, a pipe) a plain line
    at most every `every` seconds instead of carriage-return updates, so log files stay readable.
    `set_postfix(loss="0.123")` shows figures with it (call it once per item at most, e.g. per
    epoch: the value is formatted by the caller, so a CUDA loop syncs only when it asks to).

        bar = dl.progress(range(100), "train", unit="epoch")
        for epoch in bar:
            ...
            bar.set_postfix(loss=f"{loss:.3f}")
    """

    def __init__(self, iterable, desc, total=None, unit="it", every=30.0, disable=False, file=None):
        self.file = file or sys.stderr
        self.iterable, self.desc, self.unit, self.every = iterable, desc, unit, every
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.postfix, self.disable = {}, disable
        self.bar = None
        if not disable and self.file.isatty():
            self.bar = tqdm(iterable, desc=desc, total=self.total, unit=unit, leave=False,
                            dynamic_ncols=True, file=self.file)

    def set_postfix(self, **kw):
        self.postfix = kw
        if self.bar is not None:
            self.bar.set_postfix(kw, refresh=False)

    def __iter__(self):
        if self.bar is not None:
            yield from self.bar
            return
        t0 = last = time.perf_counter()
        for n, item in enumerate(self.iterable, 1):
            yield item
            now = time.perf_counter()
            if not self.disable and now - last >= self.every and n != self.total:
                last = now
                of = f"/{self.total}" if self.total else ""
                left = f", about {(self.total - n) * (now - t0) / n:.0f}s left" if self.total else ""
                extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
                print(f"{self.desc}: {n}{of} {self.unit}s, {now - t0:.0f}s{left}{extra}", file=self.file, flush=True)
