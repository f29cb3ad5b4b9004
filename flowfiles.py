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
    naming (sub01 CASME II, 006 SAMM, s01 SMIC); "flows" for any other name."""
    for rx, name in DATASETS["FLOWS"]["subject_datasets"].items():
        if re.fullmatch(rx, subject):
            return name
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

EXPORT = dict(flo="flo", csv="flows.csv", images="STSNet_whole_norm_u_v_os",
              images_csv="combined_3_class2_for_optical_flow.csv", apex="apex_images",
              folds="three_norm_u_v_os")


def _name(text):
    """A path component from a subject or clip name (CUSTOM clips may be paths)."""
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in str(text)).strip(".") or "_"


def export(samples, cache_dir, out, encoding="fixed", face="auto", flow="ipol", folds=False, skip=()):
    """Write the flow of every sample with a cache (but the sample ids in `skip`) under `out`, in
    the forms other tools read (EXPORT names the files):
    - flo/<subject>/<clip>.flo (Middlebury, u and v in pixels: what the IPOL program writes) and
      <clip>_apex.png (the aligned apex crop, lossless), listed in flows.csv (subject, clip,
      emotion, flow, apex_image, dataset; paths relative to `out`, so --catego FLOWS --csv_path
      out/flows.csv --root out reads them back into the same streams);
    - STSNet_whole_norm_u_v_os/<subject>_<clip> .png (a subject of digits only is named
      <dataset>_<subject>): STSTNet's 28x28 (u, v, strain) images (RGB,
      min-max per channel; the space before .png is theirs), apex_images/<subject>_<clip>.png and
      the label CSV with the MEGC 2019 composite's columns (label = class index), so that STSTNet's,
      HTNet's and CausalNet's scripts run on them unchanged; with `folds` also their per-fold layout
      three_norm_u_v_os/<subject>/u_test|u_train/<label>/.
    Returns the number of samples written; samples whose cache holds no float flow (8-bit flow
    images) are skipped with a note."""
    rows, png = [], lambda img: cv2.imencode(".png", img)[1].tobytes()
    t = samples.table
    twice = t.duplicated(["subject", "filename"], keep=False).to_numpy()   # CAS(ME)^3: add the onset
    jobs = list(caches.cache_jobs(samples, cache_dir, encoding, face, flow))
    no_flow = []
    for (row, path, settings, sources), dup in zip(jobs, twice):
        if sample_id(row) in skip:
            continue
        c = caches.read_cache(path, settings, ["flow"], sources)
        if c is None:
            no_flow.append(sample_id(row))
            continue
        apex = caches.read_cache(path, settings, ["apex"], sources) or \
            caches.read_cache(path, settings, ["G"], sources)
        dataset = DATASETS[row["dataset"]]["prefix"] if row["dataset"] in DATASETS else row["dataset"]
        # a subject of digits only (CASME II's 01) gets its dataset's name: the other tools' scripts
        # read the label CSV with pandas, which would make 01 the number 1 and miss its images
        subject = f"{dataset}_{row['subject']}" if str(row["subject"]).isdigit() else _name(row["subject"])
        clip = _name(row["filename"]) + (f"_{row['onset']}" if dup else "")
        name = f"{subject}_{clip}"
        flo = os.path.join(EXPORT["flo"], subject, f"{clip}.flo")
        utils.atomic_write(os.path.join(out, flo), lambda f: pp.write_flo(f, c["flow"]))
        apex_rel = ""
        if apex is not None:
            img = next(iter(apex.values()))
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
            apex_rel = os.path.join(EXPORT["flo"], subject, f"{clip}_apex.png")
            utils.atomic_write(os.path.join(out, apex_rel), lambda f: f.write(png(img)))
            utils.atomic_write(os.path.join(out, EXPORT["apex"], f"{name}.png"), lambda f: f.write(png(img)))
        image = png(cv2.cvtColor(pp.flow_image(c["flow"]), cv2.COLOR_RGB2BGR))
        utils.atomic_write(os.path.join(out, EXPORT["images"], f"{name} .png"), lambda f: f.write(image))
        rows.append(dict(subject=subject, clip=clip, emotion=samples.classes[row["label"]], flow=flo,
                         apex_image=apex_rel, dataset=dataset, label=int(row["label"]), name=name,
                         imagename=f"{name}.png" if apex_rel else "", image=image))
    if no_flow:
        print(f"export: {len(no_flow)} samples have no float flow to export (8-bit flow images), "
              f"e.g. {no_flow[0]}: skipped")
    if not rows:
        return 0
    table = pd.DataFrame(rows)
    csv = lambda df: lambda f: f.write(df.to_csv(index=False).encode())
    utils.atomic_write(os.path.join(out, EXPORT["csv"]),
                       csv(table[["subject", "clip", "emotion", "flow", "apex_image", "dataset"]]))
    composite = table.rename(columns={"subject": "sub", "clip": "filename_o"})
    composite = composite.assign(apex="", sub_filename="")
    utils.atomic_write(os.path.join(out, EXPORT["images_csv"]),
                       csv(composite[["dataset", "sub", "filename_o", "label", "apex", "imagename",
                                      "sub_filename"]]))
    if folds:
        for held_out in sorted(set(table.subject)):
            for r in table.itertuples():
                part = "u_test" if r.subject == held_out else "u_train"
                dest = os.path.join(out, EXPORT["folds"], held_out, part, str(r.label), f"{r.name} .png")
                utils.atomic_write(dest, lambda f: f.write(r.image))
    print(f"exported {len(rows)} samples to {out}/: {EXPORT['csv']} ({EXPORT['flo']}/*.flo), "
          f"{EXPORT['images_csv']} ({EXPORT['images']}/)" + (f", {EXPORT['folds']}/" if folds else ""))
    return len(rows)
