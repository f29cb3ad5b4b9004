"""The demo's faces and movements in the layouts of other datasets, for the loaders' tests:

    builders.build_casme3(root)   # spNO.1/a/color/1.jpg, several clips per task video
    builders.build_custom(root)   # clips/P1_happy/frame_0012.png + clips.csv
    builders.subset_sheet(demo, ["01", "02"], path)   # the shared demo (conftest) of fewer subjects
    builders.copy_caches(demo["cache"], "01", tmp_path / "cache")   # and the caches of one subject
"""
import glob
import os
import pathlib
import shutil

import cv2
import pandas as pd

import make_demo


def _write_clips(rng, base, pts, moves, frames, folder, name, first=1):
    """Write the clips of `moves` one after another into one frame sequence, as a task video
    holds them; returns [(onset, apex, offset)] in frame numbers from `first`."""
    os.makedirs(folder, exist_ok=True)
    out, n = [], first
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if name.endswith(".jpg") else []
    for move in moves:
        imgs, apex = make_demo._clip(rng, base, pts, move, frames)
        for t, img in enumerate(imgs):
            cv2.imwrite(os.path.join(folder, name.format(n=n + t)), img, params)
        out.append((n, n + apex - 1, n + frames - 1))
        n += frames
    return out


CASME3_SHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
CASME3_COLUMNS = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
# CAS(ME)^3 emotion -> the demo movement standing in for it. The four negative emotions move the
# nose or the brows down (AU9 / AU4), so the MEGC 3-class set is learnable; others is AU24.
CASME3_MOVES = {"happy": "happiness", "disgust": "disgust", "fear": "disgust", "anger": "others",
                "sad": "others", "surprise": "surprise", "others": "repression"}
CASME3_TASKS = {"a": ["happy", "disgust", "surprise"], "b": ["anger", "others", "fear", "sad"]}


def build_casme3(root, subjects=3, frames=4, seed=0, size=(320, 240), tasks=CASME3_TASKS) -> str:
    """CAS(ME)^3 Part A layout under `root`: spNO.<s>/<task>/color/<n>.jpg (and an empty depth/),
    each task video holding several micro-expressions one after another, and the sheet
    cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx with numeric frame cells and lower-case emotions.
    Returns the sheet's path (an existing one is returned as is)."""
    sheet = os.path.join(root, CASME3_SHEET)
    if os.path.isfile(sheet):
        return sheet
    rows = []
    for s, rng, base, pts in make_demo.demo_subjects(subjects, seed, size):
        for task, emotions in tasks.items():
            folder = os.path.join(root, f"spNO.{s}", task)
            os.makedirs(os.path.join(folder, "depth"), exist_ok=True)
            spans = _write_clips(rng, base, pts, [CASME3_MOVES[e] for e in emotions], frames,
                                 os.path.join(folder, "color"), "{n}.jpg")
            rows += [[f"spNO.{s}", task, on, ap, off, make_demo.AUS[CASME3_MOVES[e]][0], "I", e]
                     for e, (on, ap, off) in zip(emotions, spans)]
    pd.DataFrame(rows, columns=CASME3_COLUMNS).to_excel(sheet + ".tmp.xlsx", index=False)
    os.replace(sheet + ".tmp.xlsx", sheet)   # the sheet last: a killed build is not reused
    return sheet


# CUSTOM demo emotion -> the movement standing in for it
CUSTOM_MOVES = {"happy": "happiness", "surprise": "surprise", "disgust": "disgust"}


def build_custom(root, subjects=3, frames=4, seed=0, size=(320, 240), first=12) -> str:
    """A dataset for --catego CUSTOM: clips/P<s>_<emotion>/frame_0012.png ... (numbers from
    `first`, zero-padded to 4) and clips.csv with columns subject, clip, onset, apex, emotion
    (no offset: the clip folder ends the clip). Returns the CSV's path."""
    csv = os.path.join(root, "clips.csv")
    if os.path.isfile(csv):
        return csv
    rows = []
    for s, rng, base, pts in make_demo.demo_subjects(subjects, seed, size):
        for e, move in CUSTOM_MOVES.items():
            clip = f"clips/P{s}_{e}"
            (on, ap, _), = _write_clips(rng, base, pts, [move], frames, os.path.join(root, clip),
                                        "frame_{n:04d}.png", first)
            rows.append(dict(subject=f"P{s}", clip=clip, onset=on, apex=ap, emotion=e))
    pd.DataFrame(rows).to_csv(csv + ".tmp", index=False)
    os.replace(csv + ".tmp", csv)
    return csv


def subset_sheet(demo, subjects, path):
    """A coding sheet (.csv, which read_sheet takes as it takes .xlsx) of the demo's rows of
    `subjects` only: the demo of fewer subjects, with the same frames and caches. The demo's
    sheet may itself be a subset."""
    read = pd.read_csv if str(demo["sheet"]).endswith(".csv") else pd.read_excel
    t = read(demo["sheet"], dtype=str).dropna(axis=1, how="all")
    t = t[[c for c in t.columns if not c.startswith("Unnamed")]]
    t[t.Subject.isin(subjects)].to_csv(path, index=False)
    return str(path)


def cache_folder(cache, subject):
    """The folder holding a subject's caches under the cache folder `cache`, made with one set of
    settings (<cache>/<settings tag>/<subject>, see dataloader.cache_file)."""
    folders = glob.glob(os.path.join(glob.escape(str(cache)), "*", subject))
    assert len(folders) == 1, folders
    return pathlib.Path(folders[0])


def copy_caches(cache, subject, dest):
    """Copy a subject's caches into the cache folder `dest`, where they lie as in `cache`;
    returns the folder they are in."""
    src = cache_folder(cache, subject)
    return pathlib.Path(shutil.copytree(src, os.path.join(dest, os.path.relpath(src, cache))))
