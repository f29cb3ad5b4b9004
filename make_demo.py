"""
Build a small synthetic CASME II look-alike from the astronaut photo that ships with
scikit-image, so the whole pipeline runs with no dataset to download:

    python make_demo.py --root demo --subjects 5 --clips_per_class 2 --frames 6 --seed 0
    python train.py --model DSSN    # no dataset given: trains on ./demo, built on first use

Layout as CASME II: demo/sub01/EP03_01/img1.jpg ... and demo/CASME2-coding-demo.xlsx.
Each "subject" is the photo re-framed, rotated, re-lit and maybe mirrored; each clip warps
that face with one of five action-unit movements of 1.5-3 px (times --strength), placed on dlib
landmarks; a small --strength (e.g. 0.2) makes a harder set, where scores are not all 1.0.
The same seed gives the same frames byte for byte and the same sheet cells (the .xlsx
file itself carries a save timestamp). An existing finished root is reused: delete it
(or pass --force) to rebuild with other settings. --force deletes only a folder that holds
a demo this script built (its sheet and sub*/EP*/img*.jpg, nothing else).
"""
import argparse
import errno
import os
import re
import shutil
import sys
import time

import cv2
import numpy as np
import pandas as pd

import preprocess
import utils

CLASSES = ["happiness", "disgust", "repression", "surprise", "others"]   # CASME II 5-class set
SHEET = "CASME2-coding-demo.xlsx"
COLUMNS = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
           "Estimated Emotion"]
BROWS, NOSE, UPPER_LIP, LOWER_LIP = range(17, 27), range(27, 36), (50, 51, 52), (56, 57, 58)
# class -> (action units, bump width in inter-ocular distances). Mouth bumps are narrower so
# the upper- and lower-lip movements of AU24 don't cancel out before they reach the lips.
AUS = {"happiness": ("12", 0.15), "disgust": ("9", 0.2), "repression": ("24", 0.15),
       "surprise": ("1+2", 0.2), "others": ("4", 0.2)}


def _moves(cls, pts):
    """(landmark indices, unit displacement vectors) of one class, in image coords (y down)."""
    if cls == "happiness":   # AU12 lip-corner puller: corners go up and away from the mouth
        idx = [48, 54]
        out = np.sign(pts[idx, 0] - pts[48:68, 0].mean())
        vec = np.stack([0.6 * out, np.full(2, -0.8)], 1)
    elif cls == "surprise":  # AU1+2 brow raise: whole brows go up
        idx = list(BROWS)
        vec = np.tile([0.0, -1.0], (len(idx), 1))
    elif cls == "disgust":   # AU9 nose wrinkle: nose and upper lip pulled up
        idx = list(NOSE) + list(UPPER_LIP)
        vec = np.tile([0.0, -1.0], (len(idx), 1))
    elif cls == "repression":  # AU24 lip press: lips squeezed towards each other
        idx = list(UPPER_LIP) + list(LOWER_LIP)
        vec = np.array([[0.0, 1.0]] * 3 + [[0.0, -1.0]] * 3)
    else:                    # "others" as AU4 brow lowerer: brows down and towards the midline
        idx = list(BROWS)
        inward = -np.sign(pts[idx, 0] - pts[27:31, 0].mean())
        vec = np.stack([0.5 * inward, np.full(len(idx), 0.87)], 1)
    return np.array(idx), vec


def _field(cls, pts, shape):
    """Dense (h, w, 2) displacement of unit amplitude: Gaussian bumps on the moved landmarks.
    Dividing by the summed weight where it exceeds 1 keeps neighbouring bumps (ten brow
    points) from adding up beyond the landmark's own displacement, and stays smooth."""
    h, w = shape
    iod = np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0))
    sigma = AUS[cls][1] * iod
    idx, vec = _moves(cls, pts)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    num, den = np.zeros((h, w, 2), np.float32), np.zeros((h, w), np.float32)
    for (px, py), v in zip(pts[idx], vec):
        g = np.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma ** 2))
        num += g[..., None] * v.astype(np.float32)
        den += g
    return num / np.maximum(den, 1.0)[..., None]


def _source():
    """The astronaut photo (BGR) and its landmarks; loaded once per process."""
    if "img" not in _source.__dict__:
        from skimage import data
        _source.img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
        _source.pts = preprocess.landmarks(_source.img, "skimage.data.astronaut")
    return _source.img, _source.pts


def demo_subjects(n, seed, size):
    """(number, generator, base frame, landmarks) of subjects 1..n. One generator per subject:
    adding subjects or clips leaves earlier subjects unchanged (a subset is a smaller demo)."""
    for s in range(1, n + 1):
        rng = np.random.RandomState([seed, s])
        yield (s, rng, *_subject(rng, size))


def _subject(rng, size):
    """One subject's base frame (float32 BGR) and its landmarks, as a webcam would frame it."""
    img, pts = _source()
    w, h = size
    c0 = pts.mean(0)
    face_w = pts[:17, 0].max() - pts[:17, 0].min()
    for _ in range(20):   # redraw in the rare case dlib misses the face
        scale = rng.uniform(0.35, 0.45) * w / face_w        # face ~40% of the frame width
        m = cv2.getRotationMatrix2D((float(c0[0]), float(c0[1])), rng.uniform(-8, 8), scale)
        m[:, 2] += (w / 2 + rng.uniform(-0.08, 0.08) * w - c0[0],
                    h / 2 + rng.uniform(-0.06, 0.06) * h - c0[1])
        base = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REPLICATE).astype(np.float32) / 255
        if rng.rand() < 0.5:
            base = base[:, ::-1].copy()
        gain = rng.uniform(0.8, 1.15) * rng.uniform(0.96, 1.04, 3)   # exposure and colour cast
        base = np.clip(255 * gain * base ** rng.uniform(0.8, 1.25) + rng.uniform(-12, 12), 0, 255)
        try:
            return base, preprocess.landmarks(base.round().astype(np.uint8))
        except preprocess.PreprocessError:
            continue
    raise RuntimeError("no detectable face after 20 draws; try another --seed")


def _clip(rng, base, pts, cls, frames, strength=1.0):
    """Frames (uint8 BGR) of one clip and its apex frame number (1-based)."""
    h, w = base.shape[:2]
    amp, apex = rng.uniform(1.5, 3.0), rng.randint(2, frames)
    back = rng.uniform(0.4, 0.7)          # share of the apex movement undone by the offset
    light = rng.uniform(-2, 2)            # grey levels of brightness drift over the clip
    drift = rng.uniform(-0.2, 0.2, 2)     # sub-pixel head drift, far below the AU motions
    field = strength * amp * _field(cls, pts, (h, w))   # the same draws whatever the strength
    noise = np.random.default_rng(rng.randint(2 ** 31))   # 2x faster normals than RandomState
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for t in range(1, frames + 1):
        if t <= apex:   # smooth rise from 0 at onset to 1 at apex
            k = 0.5 - 0.5 * np.cos(np.pi * (t - 1) / (apex - 1))
        else:           # then a smooth partial return towards neutral by the offset
            k = 1 - back * (0.5 - 0.5 * np.cos(np.pi * (t - apex) / (frames - apex)))
        s = (t - 1) / (frames - 1)
        d = (k * field + s * drift).astype(np.float32)
        # Backward map: sample the source at x - d(x); fine for displacements of a few px.
        img = cv2.remap(base, xs - d[..., 0], ys - d[..., 1], cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REPLICATE) if t > 1 else base
        img = img + np.float32(s * light) + noise.standard_normal(img.shape, np.float32)  # sensor noise
        out.append(np.clip(img.round(), 0, 255).astype(np.uint8))
    return out, apex


def not_demo(root, sheet=True):
    """Why `root` is not a demo this script built (its sheet, sub*/EP*/img*.jpg and nothing
    else), or None: --force and a rebuild delete only such a folder."""
    for dirpath, dirs, files in os.walk(root):
        depth = os.path.relpath(dirpath, root).count(os.sep) + (dirpath != root)
        want = [r"sub\d+", r"EP\d+_\d+", None][depth]
        for d in dirs:
            if want is None or not re.fullmatch(want, d) or os.path.islink(os.path.join(dirpath, d)):
                return f"{os.path.join(dirpath, d)} is not part of a demo"
        for f in files:
            if not (depth == 0 and f == SHEET or depth == 2 and re.fullmatch(r"img\d+\.jpg", f)):
                return f"{os.path.join(dirpath, f)} is not part of a demo"
    if sheet and not os.path.isfile(os.path.join(root, SHEET)):
        return f"no {SHEET}"
    return None


def refuse(root, why):
    raise FileExistsError(errno.EEXIST, f"not a demo of make_demo.py ({why}); nothing deleted: remove it "
                          f"yourself or pick another --root", root)


def build_demo(root, subjects=5, clips_per_class=2, frames=6, seed=0, size=(320, 240), strength=1.0) -> str:
    """Write the dataset under `root` and return the path of its coding sheet (.xlsx).
    If `root` already holds a sheet it is returned as is (settings are not compared)."""
    if frames < 3:
        raise ValueError("frames must be >= 3 (onset, apex and offset are distinct)")
    root = os.path.normpath(root)
    if os.path.isfile(os.path.join(root, SHEET)):
        return os.path.join(root, SHEET)
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):   # never delete it
        refuse(root, f"no {SHEET}")
    # Build next to root and rename at the end, so a killed run never looks finished.
    tmp = root + ".tmp"
    if os.path.lexists(tmp) and (not os.path.isdir(tmp) or not_demo(tmp, sheet=False)):
        refuse(tmp, not_demo(tmp, sheet=False) if os.path.isdir(tmp) else "a file")
    shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for s, rng, base, pts in demo_subjects(subjects, seed, size):
        jobs = [(c, r) for c in CLASSES for r in range(clips_per_class)]
        order = rng.permutation(len(jobs))   # episode numbers don't give the class away
        for ep, j in enumerate(order, 1):
            cls, rep = jobs[j]
            name = f"EP{ep:02d}_{rep + 1:02d}"
            imgs, apex = _clip(rng, base, pts, cls, frames, strength)
            d = os.path.join(tmp, f"sub{s:02d}", name)
            os.makedirs(d)
            for t, img in enumerate(imgs, 1):
                cv2.imwrite(os.path.join(d, f"img{t}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            rows.append([f"{s:02d}", name, 1, apex, frames, AUS[cls][0], cls])
    os.makedirs(tmp, exist_ok=True)
    rows.sort(key=lambda r: (r[0], r[1]))
    sheet = os.path.join(tmp, SHEET)
    with pd.ExcelWriter(sheet, engine="openpyxl") as xw:
        # The two trailing columns mimic CASME2-coding-20140508.xlsx: no header, and a space
        # in the cells so readers see them (pandas drops all-empty trailing columns).
        pd.DataFrame([r + [" ", " "] for r in rows]).to_excel(
            xw, sheet_name="Sheet1", header=False, index=False, startrow=1)
        ws = xw.sheets["Sheet1"]
        for j, col in enumerate(COLUMNS, 1):
            ws.cell(1, j, col)
        for r in range(2, len(rows) + 2):
            ws.cell(r, 1).number_format = "@"   # Subject as text, so "01" keeps its zero
    os.replace(tmp, root)   # also replaces an empty root folder
    return os.path.join(root, SHEET)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="demo")
    p.add_argument("--subjects", type=utils.positive_int, default=5)
    p.add_argument("--clips_per_class", type=utils.positive_int, default=2)
    p.add_argument("--frames", type=utils.int_range(3), default=6,
                   help="frames a clip (3 or more: onset, apex and offset are distinct)")
    p.add_argument("--seed", type=utils.nonneg_int, default=0)
    p.add_argument("--size", type=utils.int_range(64), nargs=2, default=(320, 240), metavar=("W", "H"))
    p.add_argument("--strength", type=utils.positive_float, default=1.0,
                   help="scale of the action-unit movements (1: 1.5-3 px; smaller is harder to learn)")
    p.add_argument("--force", action="store_true",
                   help="delete --root first and rebuild (only a demo this script built is deleted)")
    a = p.parse_args(argv)
    return utils.cli(lambda: run(a))


def run(a):
    if a.force and os.path.lexists(a.root):
        why = not_demo(a.root) if os.path.isdir(a.root) and not os.path.islink(a.root) else "not a folder"
        if why:
            refuse(a.root, why)
        shutil.rmtree(a.root)
    t = time.time()
    existed = os.path.isfile(os.path.join(a.root, SHEET))
    sheet = build_demo(a.root, a.subjects, a.clips_per_class, a.frames, a.seed, tuple(a.size), a.strength)
    n = len(pd.read_excel(sheet, dtype=str))
    verb = "kept existing" if existed else f"built in {time.time() - t:.1f}s:"
    print(f"{verb} {n} clips under {os.path.normpath(a.root)}/subNN/EPxx_yy/img*.jpg, sheet {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
