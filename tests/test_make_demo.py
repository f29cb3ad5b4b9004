import os

import cv2
import numpy as np
import pandas as pd
import pytest

import make_demo
import preprocess as pp

FRAMES = 4


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("d") / "demo")
    sheet = make_demo.build_demo(root, subjects=2, clips_per_class=1, frames=FRAMES, seed=3)
    return root, sheet, pd.read_excel(sheet, dtype=str)


def test_layout_and_sheet(demo):
    root, sheet, df = demo
    assert sheet == os.path.join(root, "CASME2-coding-demo.xlsx")
    assert not os.path.exists(root + ".tmp")   # built aside, then renamed into place
    assert list(df.columns) == ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                                "Action Units", "Estimated Emotion", "Unnamed: 7", "Unnamed: 8"]
    assert sorted(set(df.Subject)) == ["01", "02"]
    assert sorted(os.listdir(root)) == ["CASME2-coding-demo.xlsx", "sub01", "sub02"]
    for _, r in df.iterrows():
        clip = os.path.join(root, f"sub{r.Subject}", r.Filename)
        assert sorted(os.listdir(clip)) == [f"img{i}.jpg" for i in range(1, FRAMES + 1)]
        assert cv2.imread(os.path.join(clip, "img1.jpg")).shape == (240, 320, 3)
        assert int(r.OnsetFrame) == 1 < int(r.ApexFrame) < int(r.OffsetFrame) == FRAMES
    for _, g in df.groupby("Subject"):   # balanced: one clip of each class per subject
        assert sorted(g["Estimated Emotion"]) == sorted(make_demo.CLASSES)
        assert g.Filename.is_unique


def test_existing_root_is_reused(demo):
    root, sheet, _ = demo
    before = os.path.getmtime(sheet)
    assert make_demo.build_demo(root, subjects=9) == sheet
    assert os.path.getmtime(sheet) == before


def test_deterministic(demo, tmp_path):
    root, _, df = demo
    again = make_demo.build_demo(str(tmp_path / "again"), subjects=2, clips_per_class=1,
                                 frames=FRAMES, seed=3)
    pd.testing.assert_frame_equal(pd.read_excel(again, dtype=str), df)
    r = df.iloc[-1]
    rel = os.path.join(f"sub{r.Subject}", r.Filename, f"img{r.ApexFrame}.jpg")
    with open(os.path.join(root, rel), "rb") as a, open(tmp_path / "again" / rel, "rb") as b:
        assert a.read() == b.read()


def region_motion(root, r, idx):
    """Mean |apex - onset| (grey levels) in the box around onset landmarks idx, padded."""
    clip = os.path.join(root, f"sub{r.Subject}", r.Filename)
    onset = cv2.imread(os.path.join(clip, "img1.jpg"))
    apex = cv2.imread(os.path.join(clip, f"img{r.ApexFrame}.jpg"))
    pts = pp.landmarks(onset)
    pad = 0.15 * np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0))
    (x0, y0), (x1, y1) = (pts[idx].min(0) - pad).astype(int), (pts[idx].max(0) + pad).astype(int)
    gray = lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return np.abs(gray(apex) - gray(onset))[y0:y1, x0:x1].mean()


@pytest.mark.parametrize("cls,moving", [("surprise", "brows"), ("others", "brows"),
                                        ("happiness", "mouth"), ("repression", "mouth")])
def test_apex_moves_in_the_right_place(demo, cls, moving):
    root, _, df = demo
    for _, r in df[df["Estimated Emotion"] == cls].iterrows():
        brows, mouth = region_motion(root, r, slice(17, 27)), region_motion(root, r, slice(48, 68))
        assert (brows > mouth) if moving == "brows" else (mouth > brows), (r.Subject, brows, mouth)


def test_too_few_frames(tmp_path):
    with pytest.raises(ValueError, match=r"^frames must be >= 3 \(onset, apex and offset are distinct\)$"):
        make_demo.build_demo(str(tmp_path / "x"), frames=2)
    assert os.listdir(tmp_path) == []   # refused before anything is written


def test_force_deletes_only_a_demo_it_built(demo, tmp_path, capsys):
    import shutil
    root = tmp_path / "demo"
    shutil.copytree(demo[0], root)
    args = ["--root", str(root), "--subjects", "2", "--clips_per_class", "1", "--frames", "3", "--force"]
    for extra in ("notes.txt", "sub01/EP01_01/data.csv", "sub01/keep/", "results/"):
        victim = root / extra
        victim.mkdir() if extra.endswith("/") else victim.write_text("mine")
        kept = sorted(root.rglob("*"))
        assert make_demo.main(args) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{victim} is not part of a demo" in err and "nothing deleted" in err
        assert sorted(root.rglob("*")) == kept   # not a file deleted
        (victim.rmdir if victim.is_dir() else victim.unlink)()
    other = tmp_path / "mine"   # someone's folder without a sheet
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    assert make_demo.main(["--root", str(other), "--force"]) == 2 and (other / "thesis.tex").is_file()
    assert "thesis.tex is not part of a demo" in capsys.readouterr().err
    # a demo it built is rebuilt, here with 3 frames a clip instead of 4
    assert make_demo.main(args) == 0
    assert sorted(os.listdir(root / "sub01" / "EP01_01")) == ["img1.jpg", "img2.jpg", "img3.jpg"]


def test_strength_scales_the_movements_only(demo, tmp_path):
    root, _, df = demo
    weak = str(tmp_path / "weak")
    sheet = make_demo.build_demo(weak, subjects=1, clips_per_class=1, frames=FRAMES, seed=3, strength=0.25)
    w = pd.read_excel(sheet, dtype=str)
    pd.testing.assert_frame_equal(w, df[df.Subject == "01"].reset_index(drop=True))   # same clips and apexes
    for cls, idx in (("surprise", slice(17, 27)), ("happiness", slice(48, 68))):
        r = w[w["Estimated Emotion"] == cls].iloc[0]
        assert region_motion(weak, r, idx) < 0.6 * region_motion(root, r, idx), cls
