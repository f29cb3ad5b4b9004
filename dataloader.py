"""
Datasets, coding sheets, feature caches, in-memory streams and LOSO / LODO splits.

    import dataloader as dl
    samples = dl.read_samples("CASME2-coding-20140508.xlsx", "CASME2_RAW", "CASME")   # 5 classes
    samples = dl.read_samples(None, "SMIC/HS", "SMIC")          # no sheet: labels from the folders
    samples = dl.read_samples([casme2_sheet, samm_sheet], ["CASME2_RAW", "SAMM", "SMIC/HS"], "COMPOSITE")
    # the caches themselves: save_preprocess_weight.build_caches(samples, "cache/CASME", workers=2)
    data = dl.load_streams(samples, "cache/CASME", ["F", "G"])  # uint8 streams, read once
    for subject, train_idx, test_idx in dl.loso_splits(data.subjects): ...

A sample is (subject, filename, onset): a CAS(ME)^3 task video holds several micro-expressions.
Everything that differs per dataset lives in the DATASETS table; the functions are shared
(sheets, layouts and class sets: docs/datasets.md).
"""
import collections
import glob
import json
import os
import re
import string
from dataclasses import dataclass

import numpy as np
import pandas as pd

import preprocess as pp
import utils

# Canonical column -> the names it has in the official sheets and in the port's hand-made CSVs
# (`Subject, Filename, Onset, Apex, Estimated Emotion`).
COLUMNS = {
    "subject": ["Subject"],
    "filename": ["Filename", "Clip"],
    "onset": ["OnsetFrame", "Onset Frame", "Onset"],
    "apex": ["ApexFrame", "Apex Frame", "Apex"],
    "offset": ["OffsetFrame", "Offset Frame", "Offset"],
    "emotion": ["Estimated Emotion", "Emotion"],
}
REQUIRED = ("subject", "filename", "onset", "apex", "emotion")

# Class sets: class -> the emotions (lower case, as in the sheet or the folder name) it takes.
# The 3-class sets are MEGC 2019's composite mapping. A dataset's first set is its default.
NEG_POS_SUR = {"negative": ["negative"], "positive": ["positive"], "surprise": ["surprise"]}
CASME3_EMOTIONS = ["happy", "disgust", "fear", "anger", "sad", "surprise", "others"]
CASME3_3 = {"negative": ["disgust", "fear", "anger", "sad"], "positive": ["happy"], "surprise": ["surprise"]}
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
    # SAMM: 13 note rows above the header (found by read_sheet). Frame numbers are unpadded in
    # the sheet, padded (006_05562.jpg) in most copies of the frames: matching by number takes both.
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
    # frame stands in for it (the usual choice).
    "SMIC": dict(
        prefix="smic", sheet=None, subject_width=0,
        clip="{subject}/micro/{emotion}/{filename}", example="s1/micro/negative/s1_ne_01/image000123.bmp",
        root="the HS, VIS or NIR folder holding s1, s2, ...",
        frames=[("image{n}.bmp", "dlib"), ("reg_image{n}.bmp", "none")],
        classes={3: NEG_POS_SUR},
    ),
    # CAS(ME)^3 Part A: Filename is the task video ("a".."m"), which holds several
    # micro-expressions; depth/ is not used. Class sets as published: 3 = MEGC's, 4 = + others,
    # 7 = every emotion. `emotions` lists all the sheet uses: any other is a typo, with its row.
    "CASME3": dict(
        prefix="casme3", sheet="cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", subject_width=0,
        clip="{subject}/{filename}/color", example="spNO.1/b/color/175.jpg",
        root="the Part A folder holding spNO.1, spNO.2, ...",
        frames=[("{n}.jpg", "dlib")], emotions=CASME3_EMOTIONS,
        classes={3: CASME3_3, 4: CASME3_3 | {"others": ["others"]}, 7: {e: [e] for e in CASME3_EMOTIONS}},
    ),
    # Any dataset from a CSV: `clip` is a folder under the root, its frames any image files
    # numbered by the digits that end their names. classes None: the emotions found in the CSV.
    "CUSTOM": dict(
        prefix="custom", sheet="a CSV with columns subject, clip, onset, apex, emotion [, offset]",
        subject_width=0, clip="{filename}", example="<clip>/frame_0046.png",
        root="the folder the CSV's `clip` paths are relative to",
        frames=[("{any}{n}.jpg", "dlib")], classes=None,
    ),
    # MEGC 2019 composite: each part read with its own 3-class set, subjects prefixed so LOSO runs
    # over all of them. Any datasets with a 3-class set of these names compose (--parts).
    "COMPOSITE": dict(parts=["CASME", "SAMM", "SMIC"], classes={3: NEG_POS_SUR}),
}


class DataError(utils.UserError):
    """Bad input: the message is one line naming the file, row or column."""


def class_set(catego, num_classes=None, classes=None, found=None):
    """{class: [emotions]} of a dataset; num_classes None means the dataset's default set.
    CUSTOM's classes are the emotions `found` in its CSV, sorted. `classes` keeps a subset."""
    sets = DATASETS[catego]["classes"]
    if sets is None:   # CUSTOM
        found = sorted({e for e in (found or []) if e not in ("", "nan")})
        mapping = {e: [e] for e in found if not classes or e in classes}
        if classes and set(classes) - set(found):
            raise DataError(f"--classes {' '.join(sorted(set(classes) - set(found)))}: no such emotion in "
                            f"the CSV (it has {', '.join(found)})")
        if num_classes is not None and num_classes != len(mapping):
            raise DataError(f"--num_classes {num_classes} does not fit {catego}: its CSV gives "
                            f"{len(mapping)} classes ({', '.join(mapping)}); choose them with --classes")
        return mapping
    if num_classes is None:
        mapping = next(iter(sets.values()))
    elif num_classes not in sets:
        raise DataError(f"--num_classes {num_classes} does not fit {catego}: "
                        f"its class sets have {' or '.join(map(str, sets))} classes")
    else:
        mapping = sets[num_classes]
    if classes:
        unknown = [c for c in classes if c not in mapping]
        if unknown:
            raise DataError(f"--classes {' '.join(unknown)}: not in {catego}'s {len(mapping)}-class set "
                            f"({', '.join(mapping)})")
        mapping = {c: e for c, e in mapping.items() if c in classes}
    return mapping


def sample_id(row):
    """How a sample is named everywhere: subject/filename@onset (a task video of CAS(ME)^3
    holds several micro-expressions, so subject and filename are not enough)."""
    return f"{row['subject']}/{row['filename']}@{row['onset']}"


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
    """Regex of a name template: {n} -> a frame number (any zero-padding), {any} -> any text
    (shortest, so {any}{n} takes all the digits that end a name), a field given in `fixed` ->
    that text, any other field -> one path component, captured by name."""
    out = ""
    for literal, field, _, _ in string.Formatter().parse(template):
        out += re.escape(literal)
        if field is not None:
            out += re.escape(fixed[field]) if field in fixed else \
                r"(?P<n>\d+)" if field == "n" else r".*?" if field == "any" else rf"(?P<{field}>[^/]+)"
    return out


def list_frames(folder, catego, subject):
    """{frame number: (path, face mode)} of a clip folder, sorted by number ({} if it is missing).
    Frames are matched by number, so zero-padding and image extension don't matter; where two
    namings hold the same number, the first in the table wins."""
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    found, exts = {}, "|".join(utils.IMAGE_EXTS)
    for template, face in DATASETS[catego]["frames"]:
        rx = re.compile(_template_regex(os.path.splitext(template)[0], subject=subject) + rf"\.(?:{exts})",
                        re.IGNORECASE)
        for name in sorted(names):   # sorted: the same frame wins on every file system
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
    """One row per usable sample: dataset, subject, filename, onset/apex, emotion, label, face,
    where (the sheet row). A sample is (subject, filename, onset): see sample_id."""
    table: pd.DataFrame
    classes: list
    catego: str
    notes: list   # what was dropped or guessed, to print
    takes: dict = None   # {dataset: {class: [emotions]}}, for describe
    sources: list = None   # per row, what its cache is made from: see frame_sources


def composite_parts(catego, parts=None):
    """The datasets a --catego reads: itself, or a composite's parts (its default or `parts`)."""
    spec = DATASETS[catego]
    if "parts" not in spec:
        if parts:
            raise DataError(f"--parts goes with --catego COMPOSITE, not {catego}")
        return [catego]
    if not parts:
        return list(spec["parts"])
    fit = [d for d, s in DATASETS.items() if "parts" not in s and s["classes"]
           and any(set(m) == set(next(iter(spec["classes"].values()))) for m in s["classes"].values())]
    bad = [p for p in parts if p not in fit]
    if bad or len(set(parts)) != len(parts):
        raise DataError(f"--parts {' '.join(parts)}: expected distinct datasets among {', '.join(fit)}")
    return list(parts)


def read_samples(csv_path, root, catego, num_classes=None, classes=None, parts=None):
    """The usable samples of a dataset. csv_path and root are a path or a list of paths (the
    composite takes the CASME II and SAMM sheets and the CASME II, SAMM and SMIC folders, in
    that order; SMIC has no sheet; `parts` composes other datasets, e.g. ["CASME", "SAMM"]).
    num_classes None = the dataset's default class set; classes keeps a subset of its classes."""
    if catego not in DATASETS:
        raise DataError(f"--catego {catego!r} unknown: expected one of {', '.join(DATASETS)}")
    sheets, roots = utils.as_list(csv_path), utils.as_list(root)
    parts = composite_parts(catego, parts)
    need = [p for p in parts if DATASETS[p]["sheet"]]
    if len(sheets) != len(need) or len(roots) != len(parts):
        n = lambda k, what: f"{k} {what}{'' if k == 1 else 's'}"
        raise DataError(f"--catego {catego} takes {n(len(need), 'coding sheet')}"
                        + (f" ({', '.join(need)})" if len(need) > 1 else "")
                        + f" and {n(len(parts), 'dataset folder')}"
                        + (f" ({', '.join(parts)}, in this order)" if len(parts) > 1 else "")
                        + (" (SMIC has no sheet: the folders are the labels)" if "SMIC" in parts else "")
                        + f"; got {n(len(sheets), 'sheet')} and {n(len(roots), 'folder')}")
    if "parts" not in DATASETS[catego]:
        return _read_one(sheets[0] if sheets else None, roots[0], catego, num_classes, classes)
    mapping = class_set(catego, num_classes, classes)
    names, size = list(mapping), len(class_set(catego, num_classes))
    sheets, tables, notes, takes = iter(sheets), [], [], {}
    for part, part_root in zip(parts, roots):
        s = _read_one(next(sheets) if DATASETS[part]["sheet"] else None, part_root, part, size, names,
                      check_classes=False)
        t = s.table   # subjects unique across datasets for LOSO; labels by class name
        t["subject"] = DATASETS[part]["prefix"] + "_" + t.subject
        t["label"] = [names.index(s.classes[k]) for k in t.label]
        notes += [f"{part}: {note}" for note in s.notes]
        tables.append(t)
        takes |= s.takes
    table = pd.concat(tables, ignore_index=True)
    _check_classes(table, names, "+".join(parts))
    return Samples(table, names, catego, notes, takes)


def _blank(value):
    return value is None or str(value).strip() in ("", "nan", "None")


def _apex_slip(r, onset, apex, offset):
    """What is wrong with a sheet row's apex, or None: missing, not a number, or outside
    onset < apex <= offset (CAS(ME)^3 has an apex before its onset and one equal to it)."""
    if apex is None:
        return "apex missing" if _blank(r.get("apex")) else f"apex {str(r['apex']).strip()!r} is not a number"
    if apex < onset:
        return f"apex {apex} before onset {onset}"
    if apex == onset:
        return f"apex {apex} equal to onset {onset}"
    if offset is not None and apex > offset:
        return f"apex {apex} after offset {offset}"
    return None


def _number_note(r, what):
    return f"{r['where']}: {what} {str(r.get(what)).strip()!r} is not a number"


def _read_one(csv_path, root, catego, num_classes, classes=None, check_classes=True):
    spec = DATASETS[catego]
    if not os.path.isdir(root):
        raise DataError(f"{root}: {catego} dataset folder not found (expected {spec['root']})")
    df = read_sheet(csv_path) if spec["sheet"] else read_folders(root, catego)
    source = csv_path or root
    found = [str(e).strip().lower() for e in df["emotion"]]
    mapping = class_set(catego, num_classes, classes, found)
    if not mapping:
        raise DataError(f"{source}: no emotion in column emotion")
    names = list(mapping)
    to_class = {e: c for c, emotions in mapping.items() for e in emotions}
    known = spec.get("emotions")
    rows, seen, dropped, middle, empty, fixed = [], {}, collections.Counter(), [], [], []
    for r, emotion in zip(df.to_dict("records"), found):
        subject, filename = _subject(r["subject"], spec["subject_width"]), str(r["filename"]).strip()
        if known and emotion not in known and emotion not in ("", "nan"):
            raise DataError(f"{r['where']}: unknown emotion {r['emotion']!r} "
                            f"({catego} emotions: {', '.join(known)})")
        if emotion not in to_class:
            dropped["(blank)" if emotion in ("", "nan") else emotion] += 1
            continue
        folder = r.get("folder") or os.path.join(root,
                                                 spec["clip"].format(subject=subject, filename=filename))
        frames = list_frames(folder, catego, subject)
        if spec["sheet"]:
            onset, apex, offset = (_frame_number(r.get(k)) for k in ("onset", "apex", "offset"))
            if onset is None:
                raise DataError(_number_note(r, "onset"))
            if offset is None and frames and _blank(r.get("offset")):
                offset = max(frames)   # no offset given: the clip folder ends the clip
        elif frames:   # no sheet: the clip folder is the clip, from its first to its last frame
            onset, apex, offset = min(frames), None, max(frames)
        else:
            empty.append(folder)
            continue
        key = (subject, filename, onset)
        if key in seen:
            raise DataError(f"{r['where']}: duplicate sample {subject}/{filename}@{onset} "
                            f"(first at {seen[key]})")
        seen[key] = r["where"]
        sid = f"{subject}/{filename}@{onset}"
        # A slip of the sheet (see _apex_slip). Flow onset -> apex needs a later frame, so the
        # middle frame between onset and offset stands in, as for CASME II's "/" and for SMIC.
        slip = _apex_slip(r, onset, apex, offset) if spec["sheet"] else None
        if apex is None and not spec["sheet"]:
            # SMIC: the middle of the listed frames (the same frame unless the numbering has gaps)
            apex = list(frames)[(len(frames) - 1) // 2]
            middle.append(sid)
        elif slip:
            if offset is None or (onset + offset) // 2 <= onset:
                raise DataError(f"{r['where']}: {slip} ({sid}) and no offset after the onset to take "
                                f"the middle frame from")
            apex = (onset + offset) // 2
            fixed.append(f"{r['where']}: {slip} ({sid}, offset {offset}): middle frame {apex} used")
        # A missing frame keeps the table's first naming, so --check can say what it looked for.
        name, face = spec["frames"][0]
        on_path, face = frames.get(onset, (_frame_path(folder, frames, name, onset, subject), face))
        ap_path, _ = frames.get(apex, (_frame_path(folder, frames, name, apex, subject), face))
        rows.append(dict(dataset=catego, subject=subject, filename=filename, onset=onset, apex=apex,
                         emotion=emotion, label=names.index(to_class[emotion]),
                         onset_path=on_path, apex_path=ap_path, face=face, where=r["where"]))
    notes = []
    if spec["classes"] is None:
        every = sorted({e for e in found if e not in ("", "nan")})
        notes.append(f"classes from the emotions of the sheet, sorted: {', '.join(every)}"
                     + (f"; --classes keeps {', '.join(names)}" if names != every else ""))
    if dropped:
        notes.append(f"dropped {sum(dropped.values())} (not in the {len(names)}-class set): " +
                     ", ".join(f"{k} {v}" for k, v in dropped.most_common()))
    if empty:
        notes.append(f"dropped {len(empty)} clip folders without frames: {', '.join(empty[:5])}"
                     + (", ..." if len(empty) > 5 else ""))
    if middle:
        notes.append(f"no apex annotation: the middle frame between onset and offset is the apex "
                     f"of all {len(middle)} clips")
    notes += fixed
    if not rows and empty:
        example = spec["frames"][0][0].format(n=123, subject="", any="")
        raise DataError(f"{root}: no clip folder holds frames like {example} "
                        f"(e.g. {empty[0]})")
    if not rows:
        raise DataError(f"{source}: no sample has an emotion of the {len(names)}-class set {names}")
    if not any(os.path.isfile(r["onset_path"]) for r in rows):
        raise DataError(f"{root}: no onset frame of {source} is there (expected e.g. "
                        f"{rows[0]['onset_path']}; root = {spec['root']}; it holds {_listing(root)})")
    table = pd.DataFrame(rows)
    if check_classes:
        _check_classes(table, names, source)
    return Samples(table, names, catego, notes, {catego: mapping})


def _check_classes(table, names, source):
    if table.label.nunique() < 2:
        raise DataError(f"{source}: only one class ({names[table.label[0]]}) is present; need two or more")


def _frame_path(folder, frames, template, n, subject):
    """Where frame n would be: the table's naming, or for {any}{n} names (CUSTOM) the naming of
    the clip's other frames (frame_0012.png -> frame_0013.png)."""
    if "{any}" in template and frames:
        m = re.fullmatch(r"(.*?)(\d+)(\.[^.]*)", os.path.basename(next(iter(frames.values()))[0]))
        width = len(m[2]) if m[2].startswith("0") else 0
        return os.path.join(folder, f"{m[1]}{n:0{width}d}{m[3]}")
    return os.path.join(folder, template.format(n=n, subject=subject, any=""))


def describe(samples):
    """Samples per class (with the emotions each class takes), per dataset and per subject."""
    t, classes = samples.table, samples.classes
    datasets = list(dict.fromkeys(t["dataset"])) if "dataset" in t else [samples.catego]
    takes = samples.takes or {d: class_set(d, len(classes)) for d in datasets}
    per_class = t.label.value_counts().reindex(range(len(classes)), fill_value=0)
    lines = [f"{samples.catego}: {len(t)} samples, {t.subject.nunique()} subjects, "
             f"{len(classes)}-class set"]
    for k, n in per_class.items():
        what = "; ".join((f"{d} " if len(datasets) > 1 else "") + ", ".join(takes[d][classes[k]])
                         for d in datasets)
        lines.append(f"  {classes[k]:<12} {n:>4}   <- {what}")
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


# ---------------------------------------------------------------------------------------------
# caches: one .npz per sample (written by save_preprocess_weight.build_caches), valid only for the
# same preprocessing settings and the same sources (frame numbers and frame files: see frame_sources)

def cache_file(cache_dir, row):
    """cache/<subject>/<filename>_<onset>.npz: the onset tells apart the micro-expressions of one
    CAS(ME)^3 task video (the onset is a number, so no two samples share a name)."""
    return os.path.join(cache_dir, row["subject"], f"{row['filename']}_{row['onset']}.npz")


def cache_settings(row, encoding, flow="ipol"):
    return pp.settings(row["face"], encoding, flow)


def cache_jobs(samples, cache_dir, encoding, face, flow):
    """(row, cache path, settings, sources) of every sample; a --face other than auto overrides
    the face mode the dataset table gives the row."""
    for row, sources in zip(samples.table.to_dict("records"), frame_sources(samples)):
        if face != "auto":
            row["face"] = face
        yield row, cache_file(cache_dir, row), cache_settings(row, encoding, flow), sources


def frame_sources(samples):
    """Per row, what its cache is made from: onset and apex numbers, sha256 of the two frame files.
    Content, not size + mtime: a copy or rsync of a dataset changes mtimes, and two small images
    hash in well under a millisecond. Hashed once per Samples, for caches and run folders alike."""
    if samples.sources is None or len(samples.sources) != len(samples.table):
        samples.sources = [dict(onset=int(r.onset), apex=int(r.apex), onset_sha256=utils.sha256(r.onset_path),
                                apex_sha256=utils.sha256(r.apex_path)) for r in samples.table.itertuples()]
    return samples.sources


def read_cache(path, want_settings, keys, sources=None, why=None):
    """The arrays `keys` of a cache, or None if it is missing, truncated, made otherwise or (given
    `sources`) made from other frames; then "sources" is appended to the list `why`, if given."""
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if meta["settings"] != json.loads(json.dumps(want_settings)):
                return None
            if sources is not None and meta.get("sources") != sources:
                if why is not None:
                    why.append("sources")
                return None
            return {k: z[k] for k in keys}
    except Exception:   # missing, truncated, not an npz, missing keys: all mean "rebuild"
        return None


def write_cache(path, feats, settings, sources, row):
    """One sample's cache, written atomically: its arrays and what read_cache compares."""
    meta = json.dumps({"settings": settings, "sources": sources, "onset": row["onset_path"],
                       "apex": row["apex_path"]})
    utils.atomic_write(path, lambda f: np.savez(f, meta=meta, **feats))


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
    onsets: np.ndarray     # with subject and filename, what identifies a sample
    datasets: np.ndarray   # the part of a composite each sample comes from (lodo_splits)


def load_streams(samples, cache_dir, image_mode, encoding="fixed", face="auto", flow="ipol"):
    """Read every cache once and build the (u, v, X) streams for `image_mode` (e.g. ["F", "G"])."""
    for m in image_mode:
        if m not in pp.MODES:
            raise DataError(f"--image_mode {m!r} unknown: expected some of {', '.join(pp.MODES)}")
    t = samples.table
    x = np.empty((len(image_mode), len(t), pp.SIZE, pp.SIZE, 3), np.uint8)
    for i, (row, path, settings, sources) in enumerate(cache_jobs(samples, cache_dir, encoding, face, flow)):
        c = read_cache(path, settings, ["u", "v", *image_mode], sources)
        if c is None:
            raise DataError(f"{path}: cache missing, made with other settings or from other frames or "
                            f"sheet row (run save_preprocess_weight.py with the same --cache_dir)")
        for s, m in enumerate(image_mode):
            x[s, i] = pp.stream(c, m)
    return Streams(x, t.label.to_numpy(np.int64, copy=True),
                   t.subject.to_numpy(str), t.filename.to_numpy(str),
                   t.onset.to_numpy(np.int64), t.dataset.to_numpy(str))


def loso_splits(subjects):
    """Leave-one-subject-out: (subject, train indices, test indices) per subject, sorted."""
    subjects = np.asarray(subjects)
    for s in sorted(set(subjects.tolist())):
        yield s, np.flatnonzero(subjects != s), np.flatnonzero(subjects == s)


def lodo_splits(datasets):
    """Leave-one-dataset-out, the cross-dataset protocol of a composite: (dataset, train indices,
    test indices) per dataset, sorted. With the CASME II and SAMM parts it is MEGC 2018's
    hold-out-database evaluation (train on one, test on the other, both ways)."""
    datasets = np.asarray(datasets)
    names = sorted(set(datasets.tolist()))
    if len(names) < 2:
        raise DataError(f"--protocol lodo needs two or more datasets (--catego COMPOSITE); "
                        f"this data has {len(names)} ({', '.join(names)})")
    for d in names:
        yield d, np.flatnonzero(datasets != d), np.flatnonzero(datasets == d)


# --protocol -> (the Streams field whose values are held out one at a time, the split function)
PROTOCOLS = {"loso": ("subjects", loso_splits), "lodo": ("datasets", lodo_splits)}
