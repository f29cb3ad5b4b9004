"""
The datasets: the DATASETS table (what differs per dataset: folder layout, frame naming, sheet
columns, class sets) and the coding sheets and folders read into samples.

    import datasets
    s = datasets.read_one("CASME2-coding-20140508.xlsx", "CASME2_RAW", "CASME", None)   # one dataset
    print(datasets.describe(s))

Scripts read any dataset, a composite or precomputed flow through dataloader.read_samples; the
sheets, layouts and class sets are described in docs/datasets.md.
"""
import collections
import glob
import os
import re
import string
from dataclasses import dataclass

import pandas as pd

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
    # Optical flow computed elsewhere, no frames (read_flows): a CSV `subject, clip, emotion, flow
    # [, apex_image, dataset]` naming .flo / .npy / .npz flows or 8-bit (u, v, strain) images, or
    # the MEGC 2019 composite's 28x28 images as STSTNet made them (redistributed by HTNet and
    # CausalNet): with their CSV, or in their per-fold layout with no CSV. classes None: the
    # emotions found (the composite's label codes read as negative / positive / surprise).
    "FLOWS": dict(
        prefix="flows", sheet=None, subject_width=0, flows=True, classes=None,
        example="sub01/u_test/1/sub01_EP02_01f .png",
        root="the folder the CSV's paths are relative to, or the per-fold layout's folder of subject folders",
        composite=dict(columns=["dataset", "sub", "filename_o", "label"], image="{sub}_{filename_o} .png",
                       apex="imagename", codes={"0": "negative", "1": "positive", "2": "surprise"}),
        columns=["subject", "clip", "emotion", "flow"],   # the plain CSV's (+ apex_image, dataset)
        folds=("u_test", "u_train"),   # <subject>/u_test/<label>/: that subject's samples, read once
        # the composite's subject names -> its parts, for per-dataset scores and --protocol lodo
        subject_datasets={r"sub\d+": "casme2", r"\d{3}": "samm", r"s\d+": "smic"},
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
    df.attrs["headers"] = {c: names[i] for c, i in found.items()}   # for errors that name a column
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


def listing(root):
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
                        f"(root = {spec['root']}; it holds {listing(root)})")
    return pd.DataFrame(rows)


def _frame_number(r, key, headers):
    """A sheet cell as a frame number: an int for a whole number as sheets write one ("46", or
    "46.0" from a numeric cell), None for a blank cell or text (CASME II's apex "/"). Any other
    number (4.7, 1e3) is an error naming the row and column: rounding it would pick a frame
    the sheet does not name."""
    text = str(r.get(key)).strip()
    if blank(text):
        return None
    m = re.fullmatch(r"([+-]?\d+)(?:\.0*)?", text)
    if m:
        return int(m[1])
    try:
        float(text)
    except ValueError:
        return None
    raise DataError(f"{r['where']}, column {headers.get(key, key)}: {text!r} is not a frame number "
                    f"(a whole number)")


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


def blank(value):
    return value is None or str(value).strip() in ("", "nan", "None")


def _apex_slip(r, onset, apex, offset):
    """What is wrong with a sheet row's apex, or None: missing, not a number, or outside
    onset < apex <= offset (CAS(ME)^3 has an apex before its onset and one equal to it)."""
    if apex is None:
        return "apex missing" if blank(r.get("apex")) else f"apex {str(r['apex']).strip()!r} is not a number"
    if apex < onset:
        return f"apex {apex} before onset {onset}"
    if apex == onset:
        return f"apex {apex} equal to onset {onset}"
    if offset is not None and apex > offset:
        return f"apex {apex} after offset {offset}"
    return None


def read_one(csv_path, root, catego, num_classes, classes=None, check_classes=True):
    spec = DATASETS[catego]
    if not os.path.isdir(root):
        raise DataError(f"{root}: {catego} dataset folder not found (expected {spec['root']})")
    df = read_sheet(csv_path) if spec["sheet"] else read_folders(root, catego)
    source = csv_path or root
    found = [str(e).strip().lower() for e in df["emotion"]]
    headers = df.attrs.get("headers", {})
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
        for column, value in (("subject", subject), ("filename", filename)):
            if blank(value):   # its folder would be the root or the subject's folder
                raise DataError(f"{r['where']}, column {headers.get(column, column)}: blank")
        folder = r.get("folder") or os.path.join(root,
                                                 spec["clip"].format(subject=subject, filename=filename))
        frames = list_frames(folder, catego, subject)
        if spec["sheet"]:
            onset, apex, offset = (_frame_number(r, k, headers) for k in ("onset", "apex", "offset"))
            if onset is None or onset < 0:
                raise DataError(f"{r['where']}, column {headers.get('onset', 'onset')}: "
                                f"{str(r.get('onset')).strip()!r} is not a frame number")
            if offset is None and frames and blank(r.get("offset")):
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
            apex, used = _stand_in(onset, offset, frames)
            fixed.append(f"{r['where']}: {slip} ({sid}, offset {offset}): {used}")
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
                        f"{rows[0]['onset_path']}; root = {spec['root']}; it holds {listing(root)})")
    table = pd.DataFrame(rows)
    if check_classes:
        two_classes(table, names, source)
    return Samples(table, names, catego, notes, {catego: mapping})


def _stand_in(onset, offset, frames):
    """The frame that stands in for a bad apex, and a note saying which: the middle frame between
    onset and offset, or where the clip has no such frame (a gap in its numbering) the nearest one
    after the onset and up to the offset (the earlier of two as near). With no frame there at all
    the middle frame is kept and --check and the failure table name it as missing."""
    middle = (onset + offset) // 2
    if not frames or middle in frames:
        return middle, f"middle frame {middle} used"
    near = [n for n in frames if onset < n <= offset]
    if not near:
        return middle, f"middle frame {middle} used (missing: the clip has no frame after the onset)"
    n = min(near, key=lambda n: (abs(n - middle), n))
    return n, f"middle frame {middle} missing, frame {n} used"


def two_classes(table, names, source):
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
