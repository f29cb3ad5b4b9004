"""
Optical flow computed elsewhere, read and written in one place: the FLOWS samples (a CSV of
.flo / .npy / .npz flows or 8-bit (u, v, strain) images; the MEGC 2019 composite's 28x28 images
with their label CSV or in their per-fold layout), and the export of this project's flow in
those same forms for other tools (STSTNet, HTNet, CausalNet).

    import flowfiles
    samples = flowfiles.read_flows("combined_3_class2_for_optical_flow.csv", "STSNet_whole_norm_u_v_os")
    flowfiles.export(samples, "cache/CASME", "flows/", folds=True)   # save_preprocess_weight.py --export

docs/flows.md describes the formats.
"""
import collections
import io
import json
import os
import re

import cv2
import pandas as pd

import caches
from datasets import DATASETS, DataError, Samples, blank, class_set, listing, sample_id, two_classes
import preprocess as pp
import utils

def _flow_dataset(subject):
    """The part of the composite's per-fold layout a subject belongs to, by the composite's subject
    naming (sub01 CASME II, 006 SAMM, s01 SMIC) or by the dataset prefix this project's export
    gives a composite's subjects (casme2_01, samm_006, smic_s1, casme3_spNO.1: the DATASETS
    prefixes); "flows" for any other name."""
    for rx, name in DATASETS["FLOWS"]["subject_datasets"].items():
        if re.fullmatch(rx, subject):
            return name
    for spec in DATASETS.values():
        if spec.get("prefix") and spec.get("classes") and subject.startswith(spec["prefix"] + "_"):
            return spec["prefix"]
    return "flows"


def _flow_csv(path, root, apex_root):
    """Entries (subject, filename, emotion, flow, apex, dataset, where) of a FLOWS CSV: the plain
    one, or the composite's (label codes, `{sub}_{filename_o} .png`, apex images named by
    `imagename` in apex_root); and the notes of rows skipped."""
    spec = DATASETS["FLOWS"]
    comp = spec["composite"]
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: CSV not found") from None
    except Exception as e:
        raise DataError(f"{path}: cannot read CSV ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})") \
            from None
    df.columns = [str(c).strip() for c in df.columns]
    lower = {c.lower(): c for c in df.columns}
    composite = set(comp["columns"][1:]) <= set(df.columns)
    if not composite and not set(spec["columns"]) <= set(lower):
        raise DataError(f"{path}: expected columns {', '.join(spec['columns'])} [, apex_image, dataset] "
                        f"or the composite's {', '.join(comp['columns'])}; it has {', '.join(df.columns)}")
    if apex_root and not composite and "apex_image" not in lower:
        raise DataError(f"{apex_root}: a second --img_root holds the composite CSV's apex images "
                        f"(imagename); {path} has no such column")
    entries, notes = [], []
    for i, r in enumerate(df.to_dict("records")):
        where = f"{path}: row {i + 2}"
        get = lambda k: str(r.get(k, r.get(lower.get(k), ""))).strip()
        if composite:
            code = get("label")
            emotion = comp["codes"].get(re.sub(r"\.0*$", "", code))
            if emotion is None:
                notes.append(f"{where}: label {code!r} is not one of {', '.join(comp['codes'])} "
                             f"({', '.join(comp['codes'].values())}): skipped")
                continue
            subject, filename = get("sub"), get("filename_o")
            flow = os.path.join(root, comp["image"].format(sub=subject, filename_o=filename))
            apex = os.path.join(apex_root, get(comp["apex"])) if apex_root and get(comp["apex"]) else ""
        else:
            subject, filename, emotion = get("subject"), get("clip"), get("emotion").lower()
            flow = os.path.join(root, get("flow"))
            apex = os.path.join(root, get("apex_image")) if get("apex_image") else ""
        if not subject or not filename or blank(emotion):
            notes.append(f"{where}: blank subject, clip or emotion: skipped")
            continue
        entries.append(dict(subject=subject, filename=filename, emotion=emotion, flow_path=flow,
                            apex_path=apex, dataset=get("dataset") or "flows", where=where))
    return entries, notes


def _flow_folds(root):
    """Entries of the composite's per-fold layout `<subject>/u_test/<label>/<subject>_<clip> .png`
    (each subject's own samples; u_train repeats the others' and is not read), and notes."""
    spec = DATASETS["FLOWS"]
    codes, (test, train) = spec["composite"]["codes"], spec["folds"]
    entries, notes = [], []
    subjects = sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)))
    for subject in subjects:
        folder = os.path.join(root, subject, test)
        if not os.path.isdir(folder):
            notes.append(f"{os.path.join(root, subject)}: no {test}/ folder: subject skipped")
            continue
        for code in sorted(os.listdir(folder)):
            where = os.path.join(folder, code)
            if code not in codes:
                notes.append(f"{where}: label folder {code!r} is not one of {', '.join(codes)}: skipped")
                continue
            for name in sorted(os.listdir(where)):
                stem = os.path.splitext(name)[0].strip()
                filename = stem[len(subject) + 1:] if stem.startswith(subject + "_") else stem
                entries.append(dict(subject=subject, filename=filename, emotion=codes[code],
                                    flow_path=os.path.join(where, name), apex_path="",
                                    dataset=_flow_dataset(subject), where=os.path.join(where, name)))
    if not entries and not any(os.path.isdir(os.path.join(root, s, train)) for s in subjects):
        raise DataError(f"{root}: no CSV given (--path) and no per-fold layout "
                        f"<subject>/{test}/<label>/ here (it holds {listing(root)})")
    return entries, notes


def read_flows(csv_path, root, catego="FLOWS", num_classes=None, classes=None):
    """The samples of precomputed optical flow (the FLOWS row of DATASETS): from a CSV (plain, or
    the composite's with --img_root its image folder and, optionally, the folder of its apex face
    images), or from the composite's per-fold layout given as the root alone. A sample's onset
    and apex are 0: its flow file is its source. Rows that cannot be samples (a label outside the
    class set, a duplicate, a subject folder without u_test) are skipped, each named in a note."""
    sheets, roots = utils.as_list(csv_path), utils.as_list(root)
    if len(sheets) > 1 or not roots or len(roots) > 1 + len(sheets):
        raise DataError(f"--catego {catego} takes at most one CSV and its folder (with the composite's "
                        f"CSV, a second folder: its apex face images); got {len(sheets)} CSV and "
                        f"{len(roots)} folders")
    for r in roots:
        if not os.path.isdir(r):
            raise DataError(f"{r}: {catego} folder not found (expected {DATASETS[catego]['root']})")
    entries, notes = _flow_csv(sheets[0], roots[0], roots[1] if len(roots) > 1 else None) if sheets \
        else _flow_folds(roots[0])
    source = sheets[0] if sheets else roots[0]
    seen, owner, keep = {}, {}, []
    for e in entries:
        key = (e["subject"], e["filename"])
        if key in seen:
            notes.append(f"{e['where']}: sample {e['subject']}/{e['filename']} found twice (first at "
                         f"{seen[key]}): skipped")
            continue
        if owner.setdefault(e["subject"], (e["dataset"], e["where"]))[0] != e["dataset"]:
            raise DataError(f"{e['where']}: subject {e['subject']} is in dataset {e['dataset']} here and in "
                            f"{owner[e['subject']][0]} at {owner[e['subject']][1]}: name the subjects apart")
        seen[key] = e["where"]
        keep.append(e)
    mapping = class_set(catego, num_classes, classes, [e["emotion"] for e in keep])
    names = list(mapping)
    rows = [dict(e, onset=0, apex=0, label=names.index(e["emotion"]), flow_kind=pp.flow_kind(e["flow_path"]),
                 onset_path="", face="none") for e in keep if e["emotion"] in mapping]
    dropped = collections.Counter(e["emotion"] for e in keep if e["emotion"] not in mapping)
    if dropped:
        notes.append(f"dropped {sum(dropped.values())} (not in the {len(names)}-class set): "
                     + ", ".join(f"{k} {v}" for k, v in dropped.most_common()))
    if not rows:
        raise DataError(f"{source}: no sample" + (f" ({notes[0]})" if notes else ""))
    table = pd.DataFrame(rows)
    two_classes(table, names, source)
    return Samples(table, names, catego, notes, {d: mapping for d in dict.fromkeys(table.dataset)})


# ---------------------------------------------------------------------------------------------
# the writer: this project's flow in the forms read above, for other tools

# The composite's folder names are HTNet's (`datasets/` of wangzhifengharrison/HTNet): its
# main_HTNet.py reads the apex faces from combined_datasets_whole/ and the per-fold images from
# three_norm_u_v_os/ (STSTNet's main.py reads the same layout as norm_u_v_os/: docs/flows.md).
EXPORT = dict(flo="flo", csv="flows.csv", images="STSNet_whole_norm_u_v_os",
              images_csv="combined_3_class2_for_optical_flow.csv", apex="combined_datasets_whole",
              folds="three_norm_u_v_os")
# What an export wrote, so that the next export into the same folder replaces exactly those files
MANIFEST = "export_manifest.json"
# MEGC 2019's label codes by class name (0 negative, 1 positive, 2 surprise): what the composite's
# CSV and per-fold label folders hold, and what STSTNet's, HTNet's and CausalNet's scripts score
MEGC_CODES = {name: int(code) for code, name in DATASETS["FLOWS"]["composite"]["codes"].items()}


def _name(text, prefix):
    """One path component from a subject or clip name, never shared by two names (caches.path_part
    percent-encodes separators and all but letters, digits, `.`, `_`, `-`), that pandas reads back
    as that text: a name pandas would read as a number, a boolean or a missing value (CASME II's
    subject 01 -> 1, which the other tools' scripts then miss) gets `prefix_` before it."""
    name = caches.path_part(text)
    read = pd.read_csv(io.StringIO(f"x\n{name}\n")).x
    return name if isinstance(read[0], str) and read[0] == name else f"{prefix}_{name}"


def _previous_export(out):
    """The files (relative to out) that an earlier export listed in out/MANIFEST; [] for a folder
    without one. A folder that holds the export's files or folders but no manifest is refused:
    what is there cannot be told from files of the user's."""
    path = os.path.join(out, MANIFEST)
    ours = set(EXPORT.values())
    if not os.path.exists(path):
        there = sorted(ours & set(os.listdir(out))) if os.path.isdir(out) else []
        if there:
            raise DataError(f"{out}: holds {', '.join(there)} but no {MANIFEST}, so what an export wrote "
                            f"there cannot be told from other files: export into a new folder, "
                            f"or remove them")
        return []
    try:
        with open(path, "rb") as f:
            files = json.loads(f.read())["files"]   # JSON: reading it runs nothing
        if not isinstance(files, list) or not all(isinstance(p, str) for p in files):
            raise ValueError("files is not a list of paths")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: cannot read the manifest of an earlier export ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0]}): export into a new folder") from None
    for p in files:
        parts = os.path.normpath(p).split(os.sep)
        if os.path.isabs(p) or ".." in parts or parts[0] not in ours:
            raise DataError(f"{path}: lists {p!r}, which no export writes: export into a new folder")
    return files


def _replace_previous(out, previous, planned):
    """Before writing: the manifest lists the earlier export's files and this one's (so a run cut
    short leaves none unlisted), then the earlier files are removed with the folders they leave
    empty. Nothing else is touched."""
    _write_manifest(out, sorted(set(previous) | set(planned)))
    folders = set()
    for p in previous:
        full = os.path.join(out, p)
        if os.path.isfile(full) or os.path.islink(full):
            os.remove(full)
        while os.path.dirname(p):
            p = os.path.dirname(p)
            folders.add(p)
    for p in sorted(folders, key=lambda f: -f.count(os.sep)):   # deepest first
        try:
            os.rmdir(os.path.join(out, p))
        except OSError:   # not empty: it holds other files
            pass


def _write_manifest(out, files):
    text = json.dumps({"written_by": "save_preprocess_weight.py --export", "files": files}, indent=0)
    utils.atomic_write(os.path.join(out, MANIFEST), lambda f: f.write(text.encode()))


def composite_refusal(classes):
    """Why the composite's format cannot hold this class set (None if it can): its labels are
    MEGC 2019's codes, given by class name."""
    if all(c in MEGC_CODES for c in classes):
        return None
    return (f"its labels are MEGC 2019's 0 negative, 1 positive, 2 surprise, and the {len(classes)}-class "
            f"set ({', '.join(classes)}) does not map onto them: export with --num_classes 3 "
            f"(the composite's classes) for them")


def export(samples, cache_dir, out, encoding="fixed", face="auto", flow="ipol", folds=False, skip=()):
    """Write the flow of every sample with a cache (but the sample ids in `skip`) under `out`, in
    the forms other tools read (EXPORT names the files):
    - flo/<subject>/<clip>.flo (Middlebury, u and v in pixels: what the IPOL program writes) and
      <clip>_apex.png (the aligned apex crop, lossless), listed in flows.csv (subject, clip,
      emotion, flow, apex_image, dataset: the samples' own subjects, clips and class names; paths
      relative to `out`, so --catego FLOWS --csv_path out/flows.csv --root out reads them back
      into the same streams);
    - where the class set maps onto MEGC 2019's (composite_refusal), the composite's format:
      STSNet_whole_norm_u_v_os/<subject>_<clip> .png, STSTNet's 28x28 (u, v, strain) images
      (stored RGB, min-max per channel; the space before .png is theirs),
      combined_datasets_whole/<subject>_<clip>.png (the apex faces) and the label CSV with the
      composite's columns and label codes; with `folds` also the per-fold layout
      three_norm_u_v_os/<subject>/u_test|u_train/<code>/. Subjects and clips are named by _name;
      a composite's subjects keep their dataset prefix (casme2_01), which the per-fold reader
      takes the dataset from.
    An earlier export's files in `out` (listed in its MANIFEST) are replaced, never added to; two
    samples that would share a file are refused before anything is written.
    Returns the number of samples written; samples whose cache holds no float flow (8-bit flow
    images) are skipped with a note."""
    png = lambda img: cv2.imencode(".png", img)[1].tobytes()
    t = samples.table
    twice = t.duplicated(["subject", "filename"], keep=False).to_numpy()   # CAS(ME)^3: add the onset
    refused = composite_refusal(samples.classes)
    plan, owners = [], {}
    for (row, path, settings, sources), dup in zip(caches.cache_jobs(samples, cache_dir, encoding, face,
                                                                     flow),
                                                   twice):
        if sample_id(row) in skip:
            continue
        dataset = DATASETS[row["dataset"]]["prefix"] if row["dataset"] in DATASETS else row["dataset"]
        subject = _name(row["subject"], dataset)
        onset = f"_{row['onset']}" if dup else ""
        clip = _name(row["filename"], "clip") + onset
        e = dict(row=row, path=path, settings=settings, sources=sources, dataset=dataset, subject=subject,
                 clip=clip, name=f"{subject}_{clip}", csv_clip=str(row["filename"]) + onset,
                 flo=os.path.join(EXPORT["flo"], subject, f"{clip}.flo"))
        # a subject a_b with clip c and a subject a with clip b_c would share a composite image
        for key in [("flo", e["flo"]), ("csv", str(row["subject"]), e["csv_clip"])] + \
                   ([("image", e["name"])] if refused is None else []):
            if key in owners:
                raise DataError(f"--export: samples {owners[key]} and {sample_id(row)} would both be written "
                                f"as {key[-1]}: rename one of them (subject or clip)")
            owners[key] = sample_id(row)
        plan.append(e)
    planned = [p for e in plan
               for p in (e["flo"], os.path.join(EXPORT["flo"], e["subject"], f"{e['clip']}_apex.png"))]
    if refused is None:
        planned += [os.path.join(EXPORT[k], f"{e['name']}{s}") for e in plan
                    for k, s in (("images", " .png"), ("apex", ".png"))]
        planned += [EXPORT["images_csv"]]
        planned += [os.path.join(EXPORT["folds"], held, "u_test" if held == e["subject"] else "u_train",
                                 str(MEGC_CODES[samples.classes[e["row"]["label"]]]), f"{e['name']} .png")
                    for held in sorted({e["subject"] for e in plan}) for e in plan] if folds else []
    planned += [EXPORT["csv"]]
    previous = _previous_export(out)
    ours = set(previous)
    clash = [p for p in planned if p not in ours and os.path.lexists(os.path.join(out, p))]
    if clash:
        raise DataError(f"{os.path.join(out, clash[0])}: there already and not written by an export of this "
                        f"project (not in {MANIFEST}): export into a new folder, or move it")
    _replace_previous(out, previous, planned)
    rows, written, no_flow = [], [], []

    def write(rel, data):
        utils.atomic_write(os.path.join(out, rel), lambda f: f.write(data))
        written.append(rel)
    for e in plan:
        row = e["row"]
        c = caches.read_cache(e["path"], e["settings"], ["flow"], e["sources"])
        if c is None:
            no_flow.append(sample_id(row))
            continue
        apex = caches.read_cache(e["path"], e["settings"], ["apex"], e["sources"]) or \
            caches.read_cache(e["path"], e["settings"], ["G"], e["sources"])
        utils.atomic_write(os.path.join(out, e["flo"]), lambda f: pp.write_flo(f, c["flow"]))
        written.append(e["flo"])
        apex_rel, apex_png = "", None
        if apex is not None:
            img = next(iter(apex.values()))
            apex_png = png(cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img)
            apex_rel = os.path.join(EXPORT["flo"], e["subject"], f"{e['clip']}_apex.png")
            write(apex_rel, apex_png)
        label = row["label"]
        rows.append(dict(subject=str(row["subject"]), clip=e["csv_clip"], emotion=samples.classes[label],
                         flow=e["flo"], apex_image=apex_rel, dataset=e["dataset"], sub=e["subject"],
                         filename_o=e["clip"], name=e["name"],
                         imagename=f"{e['name']}.png" if apex_rel else "",
                         label=MEGC_CODES.get(samples.classes[label]), flow_array=c["flow"],
                         apex_png=apex_png))
    if no_flow:
        print(f"export: {len(no_flow)} samples have no float flow to export (8-bit flow images), "
              f"e.g. {no_flow[0]}: skipped")
    if rows:
        table = pd.DataFrame(rows)
        csv = lambda df: df.to_csv(index=False).encode()
        write(EXPORT["csv"], csv(table[["subject", "clip", "emotion", "flow", "apex_image", "dataset"]]))
        if refused is None:
            for r in rows:
                # RGB (u, v, strain) as the composite stores it; cv2 writes BGR, hence the swap
                r["image"] = png(cv2.cvtColor(pp.flow_image(r["flow_array"]), cv2.COLOR_RGB2BGR))
                write(os.path.join(EXPORT["images"], f"{r['name']} .png"), r["image"])
                if r["apex_png"] is not None:
                    write(os.path.join(EXPORT["apex"], f"{r['name']}.png"), r["apex_png"])
            write(EXPORT["images_csv"], csv(table.assign(apex="", sub_filename="")[
                ["dataset", "sub", "filename_o", "label", "apex", "imagename", "sub_filename"]]))
            for held in sorted({r["sub"] for r in rows}) if folds else []:
                for r in rows:
                    part = "u_test" if r["sub"] == held else "u_train"
                    write(os.path.join(EXPORT["folds"], held, part, str(r["label"]), f"{r['name']} .png"),
                          r["image"])
    _write_manifest(out, sorted(written))
    if refused is not None:
        print(f"export: {EXPORT['images']}/, {EXPORT['images_csv']}, {EXPORT['apex']}/"
              + (f", {EXPORT['folds']}/" if folds else "") + f" not written: {refused}")
    if not rows:
        return 0
    print(f"exported {len(rows)} samples to {out}/: {EXPORT['csv']} ({EXPORT['flo']}/*.flo)"
          + (f", {EXPORT['images_csv']} ({EXPORT['images']}/, {EXPORT['apex']}/)" if refused is None else "")
          + (f", {EXPORT['folds']}/" if folds and refused is None else "") + f"; {MANIFEST} lists them")
    return len(rows)
