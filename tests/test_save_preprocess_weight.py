"""save_preprocess_weight.py: failures are tabled, cost nothing already cached, and --show plots."""
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

import builders
import caches
import dataloader as dl
import datasets
import preprocess as pp
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


def test_a_cache_dir_that_is_a_file_is_one_line(demo, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert spw.main(["--csv_path", demo["sheet"], "--root", demo["root"], "--catego", "CASME",
                     "--cache_dir", str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'afile'}: --cache_dir is a file, not a folder\n"


def test_any_error_of_one_pair_is_that_pairs_failure(demo, tmp_path, monkeypatch):
    s = dl.read_samples(builders.subset_sheet(demo, ["01"], tmp_path / "sheet.csv"), demo["root"], "CASME")
    three = datasets.Samples(s.table.iloc[:3], s.classes, s.catego, [])
    features = pp.features
    faults = {s.table.onset_path[0]: cv2.error("OpenCV(5.0.0) resize.cpp:42: error: (-215:Assertion failed) "
                                               "!ssize.empty() in function 'resize'\n"),
              s.table.onset_path[1]: ZeroDivisionError("float division by zero")}

    def flaky(onset, apex, face, encoding, name, flow):
        if name in faults:
            raise faults[name]
        return features(onset, apex, face, encoding, name, flow)
    monkeypatch.setattr(pp, "features", flaky)
    failures = dict(caches.build_caches(three, str(tmp_path / "cache"), quiet=True))
    ids = [datasets.sample_id(r) for r in three.table.to_dict("records")]
    assert failures == {
        ids[0]: f"{s.table.onset_path[0]}: cv2.error: OpenCV(5.0.0) resize.cpp:42: error: "
                "(-215:Assertion failed) !ssize.empty() in function 'resize'",
        ids[1]: f"{s.table.onset_path[1]}: ZeroDivisionError: float division by zero"}
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1   # the third was made

    def interrupted(*a):
        raise KeyboardInterrupt
    monkeypatch.setattr(pp, "features", interrupted)   # Ctrl-C still stops the run
    with pytest.raises(KeyboardInterrupt):
        caches.build_caches(three, str(tmp_path / "other"), quiet=True)


def test_eyes_at_one_point_are_a_failure_of_that_sample(demo, tmp_path, monkeypatch):
    s = dl.read_samples(builders.subset_sheet(demo, ["01"], tmp_path / "sheet.csv"), demo["root"], "CASME")
    one = datasets.Samples(s.table.iloc[:1], s.classes, s.catego, [])
    monkeypatch.setattr(pp, "landmarks", lambda img, name: np.full((68, 2), 50.0))
    (sid, why), = caches.build_caches(one, str(tmp_path / "cache"), quiet=True)
    assert why == f"{s.table.onset_path[0]}: the two eyes found less than a pixel apart; no face to align"


def test_show_of_a_sample_that_fails_says_why(demo, tmp_path, capsys):
    root = tmp_path / "frames"
    shutil.copytree(os.path.join(demo["root"], "sub01"), root / "sub01")
    sheet = builders.subset_sheet(demo, ["01"], tmp_path / "sheet.csv")
    t = pd.read_csv(sheet, dtype=str)
    apex = root / "sub01" / t.Filename[2] / f"img{t.ApexFrame[2]}.jpg"
    os.remove(apex)
    assert spw.main(["--csv_path", sheet, "--root", str(root), "--catego", "CASME",
                     "--cache_dir", str(tmp_path / "c"), "--show", "2", "--out", str(tmp_path / "s.png")]) \
        == 2
    err = capsys.readouterr().err
    assert err == f"error: --show 2: 01/{t.Filename[2]}@1 cannot be preprocessed: {apex}: frame not found\n"
    assert not (tmp_path / "s.png").exists()
