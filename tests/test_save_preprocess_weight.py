"""save_preprocess_weight.py: failures are tabled, cost nothing already cached, and --show plots."""
import os
import shutil

import cv2
import numpy as np
import pandas as pd

import builders
import save_preprocess_weight as spw


def test_failures_are_listed_exit_1_and_other_caches_kept(demo, tmp_path, capsys):
    root = tmp_path / "frames"   # subjects 01 and 02 of the shared demo: a copy, as frames are edited
    for sub in ("sub01", "sub02"):
        shutil.copytree(os.path.join(demo["root"], sub), root / sub)
    sheet = builders.subset_sheet(demo, ["01", "02"], tmp_path / "sheet.csv")
    t = pd.read_csv(sheet, dtype=str)
    first, second = t.iloc[0], t.iloc[1]
    # one clip loses its apex frame, another's onset frame shows no face
    os.remove(root / f"sub{first.Subject}" / first.Filename / f"img{first.ApexFrame}.jpg")
    cv2.imwrite(str(root / f"sub{second.Subject}" / second.Filename / f"img{second.OnsetFrame}.jpg"),
                np.full((240, 320, 3), 120, np.uint8))
    cache = tmp_path / "cache"
    args = ["--csv_path", sheet, "--root", str(root), "--catego", "CASME", "--cache_dir", str(cache),
            "--workers", "2"]
    assert spw.main(args) == 1
    out = capsys.readouterr().out
    assert "2 samples failed" in out
    assert f"{first.Subject}/{first.Filename}" in out and "frame not found" in out
    assert f"{second.Subject}/{second.Filename}" in out and "no face found" in out
    made = sorted(f for _, _, fs in os.walk(cache) for f in fs)
    assert len(made) == 8 and all(f.endswith(".npz") for f in made)
    assert "caches in" in out and "8 of 10 samples" in out
    # a rerun keeps the 8 and reports the same 2
    assert spw.main(args) == 1
    assert "8 valid" in capsys.readouterr().out


def test_show_writes_the_picture(demo, tmp_path):
    root, sheet = demo["root"], demo["sheet"]
    out = tmp_path / "s.png"
    assert spw.main(["--csv_path", sheet, "--root", str(root), "--catego", "CASME",
                     "--cache_dir", str(tmp_path / "c"), "--show", "3", "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] > 3 * img.shape[0]   # seven panels side by side
    assert spw.main(["--csv_path", sheet, "--root", str(root), "--catego", "CASME",
                     "--cache_dir", str(tmp_path / "c"), "--show", "99"]) == 2
