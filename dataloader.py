"""
Datasets, coding sheets, feature caches and LOSO splits.

    import dataloader as dl
    samples = dl.read_samples("CASME2-coding-20140508.xlsx", "CASME2_RAW", "CASME", num_classes=5)
    dl.build_caches(samples, "cache/CASME", workers=2)        # what save_preprocess_weight.py runs
    data = dl.load_streams(samples, "cache/CASME", ["F", "G"])  # uint8 streams, read once
    for subject, train_idx, test_idx in dl.loso_splits(data.subjects): ...

Everything that differs per dataset lives in the DATASETS table below; the functions are shared.
"""
import json
import os
import re
import tempfile
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

# Class sets: emotion in the sheet (lower case) -> class. The 3-class sets are MEGC 2019's.
NEG_POS_SUR = {"negative": ["negative"], "positive": ["positive"], "surprise": ["surprise"]}
DATASETS = {
    "CASME": dict(                      # CASME II, CASME2-coding-20140508.xlsx
        subject_width=2, subject_dir="sub{subject}",
        # (frame file name, face handling): raw frames need alignment, `Cropped` ones do not.
        frames=[("img{n}.jpg", "dlib"), ("reg_img{n}.jpg", "none")],
        classes={5: {"happiness": ["happiness"], "disgust": ["disgust"], "repression": ["repression"],
                     "surprise": ["surprise"], "others": ["others"]},
                 3: {"negative": ["disgust", "repression"], "positive": ["happiness"],
                     "surprise": ["surprise"]}},
    ),
    "SAMM": dict(                       # SAMM_Micro_FACS_Codes_v2.xlsx (note rows above the header)
        subject_width=3, subject_dir="{subject}",
        frames=[("{subject}_{n:05d}.jpg", "dlib"), ("{subject}_{n}.jpg", "dlib")],
        classes={5: {"anger": ["anger"], "contempt": ["contempt"], "happiness": ["happiness"],
                     "surprise": ["surprise"], "other": ["other"]},
                 3: {"negative": ["anger", "contempt", "disgust", "fear", "sadness"],
                     "positive": ["happiness"], "surprise": ["surprise"]}},
    ),
}


class DataError(Exception):
    """Bad input: the message is one line naming the file, row or column."""


def class_set(catego, num_classes):
    spec = DATASETS[catego]
    if num_classes not in spec["classes"]:
        raise DataError(f"--num_classes {num_classes} does not fit {catego}: "
                        f"its class sets have {sorted(spec['classes'])} classes")
    return spec["classes"][num_classes]


def read_sheet(path):
    """A coding sheet (.xlsx or .csv) as strings with canonical column names. The header row is
    found, not assumed: SAMM's sheet has 13 note rows above it."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: coding sheet not found")
    try:
        raw = pd.read_excel(path, header=None, dtype=str) if path.lower().endswith((".xlsx", ".xls")) \
            else pd.read_csv(path, header=None, dtype=str)
    except Exception as e:
        raise DataError(f"{path}: cannot read sheet ({type(e).__name__}: {e})") from None
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
    df = df.dropna(how="all").reset_index(drop=True)
    df.attrs["first_row"] = row + 2   # sheet row (1-based) of df row 0, for messages
    if df.empty:
        raise DataError(f"{path}: sheet has a header but no rows")
    return df


def _frame_number(value):
    try:
        return int(float(str(value).strip()))
    except ValueError:
        return None


def resolve_frames(root, catego, subject, filename, n):
    """Path and face mode of frame n; the first naming that exists (else the first, to name it)."""
    spec = DATASETS[catego]
    folder = os.path.join(root, spec["subject_dir"].format(subject=subject), filename)
    options = [(os.path.join(folder, name.format(n=n, subject=subject)), face)
               for name, face in spec["frames"]]
    return next((o for o in options if os.path.isfile(o[0])), options[0])


@dataclass
class Samples:
    """One row per usable sample: subject, filename, emotion, label, onset/apex paths, face."""
    table: pd.DataFrame
    classes: list
    catego: str
    notes: list   # what was dropped or guessed, to print


def read_samples(csv_path, root, catego, num_classes=5):
    if catego not in DATASETS:
        raise DataError(f"--catego {catego!r} unknown: expected one of {', '.join(DATASETS)}")
    spec, mapping = DATASETS[catego], class_set(catego, num_classes)
    classes = list(mapping)
    to_class = {e: c for c, emotions in mapping.items() for e in emotions}
    df, notes, rows = read_sheet(csv_path), [], []
    first = df.attrs["first_row"]
    dup = df.duplicated(["subject", "filename"], keep="first")
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        raise DataError(f"{csv_path}: row {first + r}: duplicate sample {df.subject[r]}/{df.filename[r]}")
    dropped, middle = {}, []
    for i, r in df.iterrows():
        where = f"{csv_path}: row {first + i}"
        subject = str(r.subject).strip()
        subject = subject.zfill(spec["subject_width"]) if subject.isdigit() else subject
        filename, emotion = str(r.filename).strip(), str(r.emotion).strip().lower()
        if emotion not in to_class:
            dropped[emotion] = dropped.get(emotion, 0) + 1
            continue
        onset, apex = _frame_number(r.onset), _frame_number(r.apex)
        offset = _frame_number(r.get("offset", None))
        if onset is None:
            raise DataError(f"{where}: onset frame {r.onset!r} is not a number")
        if apex is None:   # CASME II writes "/" for one unknown apex: use the middle frame
            if offset is None:
                raise DataError(f"{where}: apex {r.apex!r} is not a number and there is no offset")
            apex = (onset + offset) // 2
            middle.append(f"{subject}/{filename}")
        on_path, face = resolve_frames(root, catego, subject, filename, onset)
        ap_path, _ = resolve_frames(root, catego, subject, filename, apex)
        rows.append(dict(subject=subject, filename=filename, emotion=emotion,
                         label=classes.index(to_class[emotion]), onset=onset, apex=apex,
                         onset_path=on_path, apex_path=ap_path, face=face))
    if dropped:
        notes.append("dropped (not in the class set): " +
                     ", ".join(f"{k} {v}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1])))
    if middle:
        notes.append(f"apex missing, middle frame used: {', '.join(middle)}")
    if not rows:
        raise DataError(f"{csv_path}: no row has an emotion of the {num_classes}-class set {classes}")
    table = pd.DataFrame(rows)
    if table.label.nunique() < 2:
        raise DataError(f"{csv_path}: only one class ({classes[table.label[0]]}) is present; need two or more")
    return Samples(table, classes, catego, notes)


def describe(samples):
    """Samples per class and per subject, as printable text."""
    t = samples.table
    per_class = t.label.value_counts().reindex(range(len(samples.classes)), fill_value=0)
    lines = [f"{samples.catego}: {len(t)} samples, {t.subject.nunique()} subjects, "
             f"{len(samples.classes)} classes"]
    lines += [f"  {samples.classes[k]:<12} {v}" for k, v in per_class.items()]
    lines.append("  per subject: " + ", ".join(f"{s}:{n}" for s, n in t.subject.value_counts().sort_index().items()))
    return "\n".join(lines + [f"  {n}" for n in samples.notes])


# ---------------------------------------------------------------------------------------------
# caches: one .npz per sample, written atomically, valid only for the same preprocessing settings

def cache_file(cache_dir, row):
    return os.path.join(cache_dir, row["subject"], f"{row['filename']}.npz")


def atomic_write(path, write):
    """Call write(fileobj) on a temp file beside `path`, then rename it into place: a crash or
    Ctrl-C never leaves a half-written `path`."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cache_settings(row, encoding):
    return pp.settings(row["face"], encoding)


def read_cache(path, want_settings, keys):
    """The arrays `keys` of a cache, or None if it is missing, truncated or made otherwise."""
    try:
        with np.load(path) as z:
            if json.loads(str(z["meta"]))["settings"] != json.loads(json.dumps(want_settings)):
                return None
            return {k: z[k] for k in keys}
    except Exception:   # missing, truncated, not an npz, missing keys: all mean "rebuild"
        return None


def _build_one(job):
    row, path, settings = job
    try:
        onset, apex = pp.read_image(row["onset_path"]), pp.read_image(row["apex_path"])
        feats = pp.features(onset, apex, settings["face"], settings["encoding"], row["onset_path"])
        meta = json.dumps({"settings": settings, "onset": row["onset_path"], "apex": row["apex_path"]})
        atomic_write(path, lambda f: np.savez(f, meta=meta, **feats))
        return row, None
    except pp.PreprocessError as e:
        return row, str(e)


def build_caches(samples, cache_dir, encoding="fixed", face="auto", workers=1, quiet=False):
    """Compute and write the cache of every sample that lacks a valid one.
    Returns [(subject/filename, reason)] of the failures; finished caches are never lost."""
    jobs = []
    for row in samples.table.to_dict("records"):
        if face != "auto":
            row["face"] = face
        settings = cache_settings(row, encoding)
        path = cache_file(cache_dir, row)
        if read_cache(path, settings, ["u"]) is None:
            jobs.append((row, path, settings))
    if not quiet:
        print(f"caches: {len(samples.table) - len(jobs)} valid in {cache_dir}, {len(jobs)} to build")
    failures = []
    if not jobs:
        return failures
    workers = max(1, min(workers, len(jobs)))
    # fork shares the loaded dlib model; each worker builds its own TV-L1 solver lazily
    with get_context("fork").Pool(workers) if workers > 1 else _Serial() as pool:
        for row, err in tqdm(pool.imap_unordered(_build_one, jobs), total=len(jobs),
                             desc="preprocess", disable=quiet, unit="pair"):
            if err:
                failures.append((f"{row['subject']}/{row['filename']}", err))
    return failures


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


def load_streams(samples, cache_dir, image_mode, encoding="fixed", face="auto"):
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
        c = read_cache(path, cache_settings(row, encoding), ["u", "v", *image_mode])
        if c is None:
            raise DataError(f"{path}: cache missing or made with other settings "
                            f"(run save_preprocess_weight.py with the same --cache_dir)")
        for s, m in enumerate(image_mode):
            x[s, i] = np.stack([c["u"], c["v"], c[m]], axis=-1)
    return Streams(x, t.label.to_numpy(np.int64, copy=True), t.subject.to_numpy(str), t.filename.to_numpy(str))


def loso_splits(subjects):
    """Leave-one-subject-out: (subject, train indices, test indices) per subject, sorted."""
    subjects = np.asarray(subjects)
    for s in sorted(set(subjects.tolist())):
        yield s, np.flatnonzero(subjects != s), np.flatnonzero(subjects == s)
