"""Flow files read and written (flowfiles.py): the demo's own flow exported (conftest.demo_export:
its 5 classes, so .flo and flows.csv only; conftest.demo_export3: --num_classes 3 through
save_preprocess_weight.py's command line, every format), read back in each file format and
layout, the bytes on disk checked against readings of their own (cv2, pandas), exports into a
folder that holds another, odd subject and clip names, and a model trained on the composite's
images predicting a new clip."""
import json
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import caches
import dataloader as dl
import datasets
import flowfiles
import predict
import preprocess as pp
import runfolder
import save_preprocess_weight as spw
import train

MEGC = {"negative": 0, "positive": 1, "surprise": 2}   # MEGC 2019's label codes, as published


def tiny(*extra, epochs=1):
    return [*extra, "--epochs", str(epochs), "--batch_size", "4", "--learning_rate", "1e-3", "--workers", "2"]


# ---------------------------------------------------------------------------------------------
# FLOWS: optical flow computed elsewhere (the demo's own flow exported by save_preprocess_weight,
# conftest.demo_export, demo_export3), in each file format and both layouts of the MEGC 2019 composite's images

def flow_streams(csv, root, cache, modes, catego="FLOWS"):
    samples = dl.read_samples(csv, root, catego)
    assert caches.build_caches(samples, str(cache), quiet=True) == []
    return samples, dl.load_streams(samples, str(cache), modes)


def named(samples, streams):
    """{sample: (class name, index)} to set two loaders' samples side by side (the export names
    the demo's subject 01 casme2_01)."""
    ids = [f"{s.removeprefix('casme2_')}/{f}" for s, f in zip(streams.subjects, streams.filenames)]
    return {i: (samples.classes[y], k) for k, (i, y) in enumerate(zip(ids, streams.y))}


def test_flo_export_reads_back_into_the_very_streams(demo, demo_export, tmp_path):
    a = dl.read_samples(demo["sheet"], demo["root"], "CASME")
    # 5 classes do not map onto MEGC's codes: no composite format, flows.csv with class names
    assert sorted(os.listdir(demo_export)) == sorted([flowfiles.EXPORT["flo"], flowfiles.EXPORT["csv"],
                                                      flowfiles.MANIFEST])
    sa = dl.load_streams(a, demo["cache"], ["F", "S", "G"])
    b, sb = flow_streams(os.path.join(demo_export, "flows.csv"), demo_export, tmp_path / "c", ["F", "S", "G"])
    na, nb = named(a, sa), named(b, sb)
    assert na.keys() == nb.keys() and len(na) == 20
    for i, (label, k) in na.items():
        assert nb[i][0] == label
        assert np.array_equal(sa.x[:, k], sb.x[:, nb[i][1]]), i   # u, v, F, S and G, bit for bit
    assert dl.stream_modes(b) == ["F", "S", "G"]
    # the samples' own subjects and clips, and their dataset
    assert sorted(zip(b.table.subject, b.table.filename)) == sorted(zip(a.table.subject, a.table.filename))
    assert set(b.table.dataset) == {"casme2"}


def test_composite_images_csv_and_per_fold_layout_give_the_same_images(demo_export3, tmp_path):
    images = os.path.join(demo_export3, flowfiles.EXPORT["images"])
    csv = os.path.join(demo_export3, flowfiles.EXPORT["images_csv"])
    apex = os.path.join(demo_export3, flowfiles.EXPORT["apex"])
    a, sa = flow_streams(csv, [images, apex], tmp_path / "a", ["S", "G"])
    b, sb = flow_streams(None, os.path.join(demo_export3, flowfiles.EXPORT["folds"]), tmp_path / "b", ["S"])
    assert a.classes == b.classes == ["negative", "positive", "surprise"]
    assert dl.stream_modes(a) == ["S", "G"] and dl.stream_modes(b) == ["S"]
    assert not a.notes and not b.notes   # every row and label folder read
    # the dataset of every sample, from the CSV's column and from the per-fold subject prefix
    assert set(a.table.dataset) == set(b.table.dataset) == {"casme2"}
    na, nb = named(a, sa), named(b, sb)
    assert na.keys() == nb.keys() and len(na) == 16   # 4 subjects x 4 samples, each read once
    rows = np.floor(np.arange(227) * 28 / 227).astype(int)   # nearest neighbour, 28 -> 227
    for i, (label, k) in na.items():
        assert nb[i][0] == label
        assert np.array_equal(sa.x[0, k], sb.x[0, nb[i][1]])
        # read as RGB: u, v, strain
        png = cv2.imread(os.path.join(images, f"casme2_{i.replace('/', '_')} .png"))[..., ::-1]
        assert np.array_equal(sa.x[0, k], png[rows][:, rows]), i   # the stored image, only enlarged


def minmax(x):
    lo, hi = float(x.min()), float(x.max())
    return np.rint((x - lo) / (hi - lo) * 255)


def test_composite_export_on_disk_as_published(demo, demo_export3):
    # Read with the other tools' own means (pandas with its defaults, cv2.imread, cv2's .flo
    # reader), not with flowfiles: labels by class name, channel order, names, per-fold layout.
    s = dl.read_samples(demo["sheet"], demo["root"], "CASME", num_classes=3)
    csv = pd.read_csv(os.path.join(demo_export3, flowfiles.EXPORT["images_csv"]))
    assert list(csv.columns) == ["dataset", "sub", "filename_o", "label", "apex", "imagename", "sub_filename"]
    assert all(isinstance(x, str) for x in [*csv["sub"], *csv.filename_o])   # 01 stays text: casme2_01
    assert len(csv) == len(s.table) == 16 and set(csv.dataset) == {"casme2"}
    codes = {(r.sub, r.filename_o): r.label for r in csv.itertuples()}
    folds = os.path.join(demo_export3, flowfiles.EXPORT["folds"])
    subjects = sorted(os.listdir(folds))
    assert subjects == ["casme2_01", "casme2_02", "casme2_03", "casme2_04"]
    for r in s.table.itertuples():
        sub, name = f"casme2_{r.subject}", f"casme2_{r.subject}_{r.filename}"
        code = MEGC[s.classes[r.label]]
        assert codes[(sub, r.filename)] == code, name
        img = cv2.imread(os.path.join(demo_export3, flowfiles.EXPORT["images"], f"{name} .png"))   # B, G, R
        assert img.shape == (28, 28, 3)
        flow = cv2.readOpticalFlow(os.path.join(demo_export3, "flo", sub, f"{r.filename}.flo"))
        small = [cv2.resize(c, (28, 28), interpolation=cv2.INTER_AREA)
                 for c in (flow[..., 0], flow[..., 1], pp.optical_strain(flow[..., 0], flow[..., 1]))]
        for channel, want in zip((2, 1, 0), small):   # R = u, G = v, B = strain
            assert np.abs(img[..., channel] - minmax(want)).max() <= 1, (name, channel)
        assert np.abs(img[..., 0].astype(int) - minmax(small[0])).max() > 20   # B is not u
        # per-fold: u_test/<code>/ of its own subject, u_train/<code>/ of every other, nowhere else
        where = sorted(os.path.relpath(os.path.join(root, n), folds) for root, _, names in os.walk(folds)
                       for n in names if n == f"{name} .png")
        assert where == sorted(os.path.join(h, "u_test" if h == sub else "u_train", str(code), f"{name} .png")
                               for h in subjects), name
        apex = cv2.imread(os.path.join(demo_export3, flowfiles.EXPORT["apex"], f"{name}.png"))
        assert np.array_equal(apex, cv2.imread(os.path.join(demo_export3, "flo", sub, f"{r.filename}_apex.png")))
    assert set(csv.imagename) == {f"{n}.png" for n in csv["sub"] + "_" + csv.filename_o}


def test_flow_bad_inputs_are_named_and_good_samples_kept(demo_export, demo_export3, tmp_path, capsys):
    flo = os.path.join(demo_export, "flo", "casme2_01")
    good = sorted(n for n in os.listdir(flo) if n.endswith(".flo"))
    shutil.copy(os.path.join(flo, good[0]), tmp_path / "good.flo")
    np.save(tmp_path / "good.npy", cv2.readOpticalFlow(os.path.join(flo, good[1])))
    shutil.copy(os.path.join(demo_export3, flowfiles.EXPORT["images"], "casme2_02_EP02_01 .png"),
                tmp_path / "good.png")
    (tmp_path / "tag.flo").write_bytes(b"FLOW" + bytes(20))
    (tmp_path / "cut.flo").write_bytes((tmp_path / "good.flo").read_bytes()[:-8])
    cv2.writeOpticalFlow(str(tmp_path / "nan.flo"), np.full((8, 8, 2), np.nan, np.float32))
    cv2.imwrite(str(tmp_path / "gray.png"), np.zeros((28, 28), np.uint8))
    cv2.imwrite(str(tmp_path / "deep.png"), np.zeros((28, 28, 3), np.uint16))
    rows = [("P1", "a", "happy", "good.flo"), ("P1", "b", "sad", "good.npy"),
            ("P2", "c", "happy", "good.png"),
            ("P2", "d", "sad", "missing.flo"), ("P2", "e", "sad", "tag.flo"), ("P3", "f", "happy", "cut.flo"),
            ("P3", "g", "sad", "nan.flo"), ("P3", "h", "happy", "gray.png"), ("P3", "i", "sad", "deep.png"),
            ("P1", "a", "sad", "good.npy"), ("P3", "j", "", "good.flo")]
    pd.DataFrame(rows, columns=["subject", "clip", "emotion", "flow"]).to_csv(tmp_path / "f.csv", index=False)
    args = ["--catego", "FLOWS", "--csv_path", str(tmp_path / "f.csv"), "--root", str(tmp_path),
            "--cache_dir", str(tmp_path / "cache"), "--workers", "1"]
    assert spw.main(args) == 1
    out = capsys.readouterr().out
    assert "row 11: sample P1/a found twice (first at" in out
    assert "row 12: blank subject, clip or emotion" in out
    for name, why in [("missing.flo", "flow file not found"), ("tag.flo", "not a .flo file"),
                      ("cut.flo", ".flo header says 227x227, which needs 412232 bytes"),
                      ("nan.flo", "128 NaN or infinite"),
                      ("gray.png", "1-channel image"), ("deep.png", "uint16 image")]:
        assert f"{tmp_path / name}: {why}" in out, name
    assert "6 samples failed" in out and "3 of 9 samples" in out
    # the good ones are cached; their modes: the 8-bit image allows S only, one line says so
    ok = flowfiles.read_flows(str(tmp_path / "f.csv"), str(tmp_path))
    ok.table = ok.table[ok.table.flow_path.str.contains("good")].reset_index(drop=True)
    assert dl.stream_modes(ok) == ["S"]
    with pytest.raises(datasets.DataError,
                       match=r"--image_mode F: 8-bit flow images \(e.g. .*good.png\) .* gives S$"):
        dl.load_streams(ok, str(tmp_path / "cache"), ["F"])
    assert dl.load_streams(ok, str(tmp_path / "cache"), ["S"]).x.shape == (1, 3, 227, 227, 3)


def test_per_fold_layout_faults_are_named_and_its_subjects_give_the_datasets(demo_export3, tmp_path):
    src = os.path.join(demo_export3, flowfiles.EXPORT["folds"])
    root = tmp_path / "folds"
    # the composite's subject naming: sub01 CASME II, 006 SAMM, s03 SMIC; one subject without u_test
    for old, new in (("casme2_01", "sub01"), ("casme2_02", "006"), ("casme2_03", "s03")):
        for label in os.listdir(os.path.join(src, old, "u_test")):
            for name in os.listdir(os.path.join(src, old, "u_test", label)):
                os.makedirs(root / new / "u_test" / label, exist_ok=True)
                shutil.copy(os.path.join(src, old, "u_test", label, name),
                            root / new / "u_test" / label / name.replace(f"{old}_", f"{new}_", 1))
    os.makedirs(root / "s04" / "u_train" / "0")
    shutil.copy(next(iter((root / "sub01" / "u_test" / "0").iterdir())), root / "sub01" / "u_test" / "1")
    os.makedirs(root / "sub01" / "u_test" / "3")
    shutil.copy(next(iter((root / "sub01" / "u_test" / "2").iterdir())), root / "sub01" / "u_test" / "3" / "x .png")
    s = dl.read_samples(None, str(root), "FLOWS")
    assert sorted(set(s.table.subject)) == ["006", "s03", "sub01"]
    assert dict(zip(s.table.subject, s.table.dataset)) == {"sub01": "casme2", "006": "samm", "s03": "smic"}
    notes = "\n".join(s.notes)
    assert f"{root / 's04'}: no u_test/ folder: subject skipped" in notes
    assert "found twice" in notes and "label folder '3' is not one of 0, 1, 2" in notes
    assert len(s.table) == 12 and (s.table.filename.str.match(r"EP\d\d_01$")).all()
    with pytest.raises(datasets.DataError, match="no CSV given .* no per-fold layout"):
        dl.read_samples(None, os.path.join(demo_export3, flowfiles.EXPORT["images"]), "FLOWS")
    bad = pd.DataFrame({"subject": ["P1"], "clip": ["a"], "label": ["happy"]})
    bad.to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(datasets.DataError, match=r"x.csv: expected columns subject, clip, emotion, flow .* it has "
                                           r"subject, clip, label$"):
        dl.read_samples(str(tmp_path / "x.csv"), str(tmp_path), "FLOWS")
