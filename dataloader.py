"""
Datasets, coding sheets, feature caches, in-memory streams and LOSO / LODO splits.

    import dataloader as dl
    samples = dl.read_samples("CASME2-coding-20140508.xlsx", "CASME2_RAW", "CASME")   # 5 classes
    samples = dl.read_samples(None, "SMIC/HS", "SMIC")          # no sheet: labels from the folders
    samples = dl.read_samples([casme2_sheet, samm_sheet], ["CASME2_RAW", "SAMM", "SMIC/HS"], "COMPOSITE")
    # the caches themselves: caches.build_caches(samples, "cache/CASME", workers=2)
    data = dl.load_streams(samples, "cache/CASME", ["F", "G"])  # uint8 streams, read once
    for subject, train_idx, test_idx in dl.loso_splits(data.subjects): ...

A sample is (subject, filename, onset): a CAS(ME)^3 task video holds several micro-expressions.
Everything that differs per dataset lives in the DATASETS table; the functions are shared
(sheets, layouts and class sets: docs/datasets.md).
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd

import caches
from datasets import DATASETS, DataError, Samples, class_set, composite_parts, read_one, two_classes
import flowfiles
import preprocess as pp
import utils

def read_samples(csv_path, root, catego, num_classes=None, classes=None, parts=None):
    """The usable samples of a dataset. csv_path and root are a path or a list of paths (the
    composite takes the CASME II and SAMM sheets and the CASME II, SAMM and SMIC folders, in
    that order; SMIC has no sheet; `parts` composes other datasets, e.g. ["CASME", "SAMM"]).
    num_classes None = the dataset's default class set; classes keeps a subset of its classes."""
    if catego not in DATASETS:
        raise DataError(f"--catego {catego!r} unknown: expected one of {', '.join(DATASETS)}")
    if DATASETS[catego].get("flows"):
        if parts:
            raise DataError(f"--parts goes with --catego COMPOSITE, not {catego}")
        return flowfiles.read_flows(csv_path, root, catego, num_classes, classes)
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
        return read_one(sheets[0] if sheets else None, roots[0], catego, num_classes, classes)
    mapping = class_set(catego, num_classes, classes)
    names, size = list(mapping), len(class_set(catego, num_classes))
    sheets, tables, notes, takes = iter(sheets), [], [], {}
    for part, part_root in zip(parts, roots):
        s = read_one(next(sheets) if DATASETS[part]["sheet"] else None, part_root, part, size, names,
                      check_classes=False)
        t = s.table   # subjects unique across datasets for LOSO; labels by class name
        t["subject"] = DATASETS[part]["prefix"] + "_" + t.subject
        t["label"] = [names.index(s.classes[k]) for k in t.label]
        notes += [f"{part}: {note}" for note in s.notes]
        tables.append(t)
        takes |= s.takes
    table = pd.concat(tables, ignore_index=True)
    two_classes(table, names, "+".join(parts))
    return Samples(table, names, catego, notes, takes)


def stream_modes(samples):
    """The third channels (of F S G) that every sample can give: all three from frames; from a
    float flow file F and S, from an 8-bit flow image S as stored (its per-image scaling lost the
    flow's scale, so no magnitude); G only where the sample has an apex image."""
    t = samples.table
    if "flow_kind" not in t:
        return list(pp.MODES)
    can = set(pp.MODES)
    for kind, apex in zip(t.flow_kind, t.apex_path):
        can &= ({"F", "S", "O"} if kind == "float" else {"S", "O"}) | ({"G"} if apex else set())
    return [m for m in pp.MODES if m in can]


def check_modes(samples, image_mode):
    """Refuse, in one line that says what would work, a stream the data cannot honestly give."""
    can = stream_modes(samples)
    for m in image_mode:
        if m not in pp.MODES:
            raise DataError(f"--image_mode {m!r} unknown: expected some of {', '.join(pp.MODES)}")
        if m in can:
            continue
        t = samples.table
        why = {"F": "8-bit flow images (e.g. {}) hold u, v and strain min-max scaled per image, so the "
                    "flow's magnitude is lost",
               "S": "", "O": "",
               "G": "no apex face image for e.g. {} (a CSV column apex_image; with the composite's CSV, the "
                    "folder of its imagename images as a second --img_root)"}[m]
        example = t.flow_path[(t.flow_kind == "image") if m == "F" else (t.apex_path == "")].iloc[0]
        raise DataError(f"--image_mode {m}: {why.format(example)}; this data gives "
                        f"{' '.join(can) or 'no stream'}")


@dataclass
class Streams:
    """x: uint8 (S, N, H, W, 3), H = W = 227 (28 for O) - stream-major, channels last, so one stream's batch
    is a contiguous gather that torch sees as channels_last NCHW without a copy."""
    x: np.ndarray
    y: np.ndarray
    subjects: np.ndarray
    filenames: np.ndarray
    onsets: np.ndarray     # with subject and filename, what identifies a sample
    datasets: np.ndarray   # the part of a composite each sample comes from (lodo_splits)


def load_streams(samples, cache_dir, image_mode, encoding="fixed", face="auto", flow="ipol"):
    """Read every cache once and build the (u, v, X) streams for `image_mode` (e.g. ["F", "G"])."""
    check_modes(samples, image_mode)
    sizes = {pp.stream_size(m) for m in image_mode}
    if len(sizes) > 1:
        raise DataError(f"--image_mode {' '.join(image_mode)}: streams of one network have one size "
                        f"(O is {pp.STSTNET_SIZE}x{pp.STSTNET_SIZE}, F S G {pp.SIZE}x{pp.SIZE})")
    t = samples.table
    size = sizes.pop()
    x = np.empty((len(image_mode), len(t), size, size, 3), np.uint8)
    jobs = caches.cache_jobs(samples, cache_dir, encoding, face, flow)
    for i, (row, path, settings, sources) in enumerate(jobs):
        why = []
        image = row.get("flow_kind") == "image"
        keys = list(dict.fromkeys(k for m in image_mode for k in pp.stream_keys(m, image)))
        c = caches.read_cache(path, settings, keys, sources, why)
        if c is None:
            raise DataError(f"{path}: cache {caches.CACHE_FAULTS[why[-1]]} (run save_preprocess_weight.py "
                            f"with the same --cache_dir and settings)")
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
