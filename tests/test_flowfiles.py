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

import builders
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
# conftest.demo_export, demo_export3), in each file format and both layouts of the MEGC 2019
# composite's images

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
    assert dl.stream_modes(b) == ["F", "S", "G", "O"]
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
    assert dl.stream_modes(a) == ["S", "G", "O"] and dl.stream_modes(b) == ["S", "O"]
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
        assert np.array_equal(apex, cv2.imread(os.path.join(demo_export3, "flo", sub,
                                                            f"{r.filename}_apex.png")))
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
    assert dl.stream_modes(ok) == ["S", "O"]
    with pytest.raises(datasets.DataError,
                       match=r"--image_mode F: 8-bit flow images \(e.g. .*good.png\) .* gives S O$"):
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
    shutil.copy(next(iter((root / "sub01" / "u_test" / "2").iterdir())),
                root / "sub01" / "u_test" / "3" / "x .png")
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
    with pytest.raises(datasets.DataError, match=r"x.csv: expected columns subject, clip, emotion, flow "
                                                 r".* it has subject, clip, label$"):
        dl.read_samples(str(tmp_path / "x.csv"), str(tmp_path), "FLOWS")


# ---------------------------------------------------------------------------------------------
# exporting into a folder that holds another export, or files of the user's

def test_reexport_replaces_its_own_files_and_never_the_users(demo, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--csv_path", demo["sheet"], "--root", demo["root"], "--catego", "CASME", "--cache_dir",
            demo["cache"], "--workers", "1", "--export", str(out), "--export_folds"]
    files = lambda: sorted(os.path.relpath(os.path.join(r, n), out) for r, _, ns in os.walk(out) for n in ns)
    # 5 classes: the composite's format refused in one line, flows.csv (class names) written
    assert spw.main(base) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "not written" in line]
    assert len(said) == 1 \
        and said[0].endswith("export with --num_classes 3 (the composite's classes) for them")
    assert len(pd.read_csv(out / "flows.csv")) == 20 and not (out / flowfiles.EXPORT["images"]).exists()
    (out / "notes.txt").write_text("mine")
    assert spw.main(base + ["--num_classes", "3"]) == 0
    os.makedirs(out / flowfiles.EXPORT["folds"] / "casme2_01" / "u_test" / "1", exist_ok=True)
    (out / flowfiles.EXPORT["folds"] / "casme2_01" / "u_test" / "1" / "mine.txt").write_text("mine")
    # a subset: positive goes, and nothing of the earlier exports stays but the user's two files
    assert spw.main(base + ["--num_classes", "3", "--classes", "negative", "surprise"]) == 0
    capsys.readouterr()
    manifest = json.loads((out / flowfiles.MANIFEST).read_text())["files"]
    assert sorted(manifest + [flowfiles.MANIFEST, "notes.txt",
                              os.path.join(flowfiles.EXPORT["folds"], "casme2_01",
                                           "u_test", "1", "mine.txt")]) \
        == files()
    csv = pd.read_csv(out / flowfiles.EXPORT["images_csv"])
    assert len(csv) == len(pd.read_csv(out / "flows.csv")) == 12 and set(csv.label) == {0, 2}
    assert len([f for f in files() if f.endswith(".flo")]) == 12
    pngs = [f for f in files() if f.startswith(flowfiles.EXPORT["folds"]) and f.endswith(" .png")]
    assert len(pngs) == 4 * 12 \
        and len({(f.split(os.sep)[1], os.path.basename(f)) for f in pngs}) == 48   # once a fold
    # no manifest: what is there cannot be told from the user's files, refused in one line
    shutil.copytree(out, tmp_path / "copy")
    os.remove(tmp_path / "copy" / flowfiles.MANIFEST)
    at = lambda d: base[:-3] + ["--export", str(d)]
    assert spw.main(at(tmp_path / "copy")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'copy'}: holds " in err[0] \
        and "but no export_manifest.json" in err[0]
    # a file of the user's where the export would write (a positive sample's image): refused, kept
    s = dl.read_samples(demo["sheet"], demo["root"], "CASME", num_classes=3)
    happy = s.table[(s.table.label == 1) & (s.table.subject == "01")].filename.iloc[0]
    mine = out / flowfiles.EXPORT["images"] / f"casme2_01_{happy} .png"
    mine.write_text("mine")
    assert spw.main(base + ["--num_classes", "3"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {mine}: there already and not written by an "
                                               f"export of this project (not in export_manifest.json): "
                                               f"export into a new folder, or move it")
    assert mine.read_text() == "mine" and len(pd.read_csv(out / "flows.csv")) == 12   # nothing written
    # a manifest that names a file outside the export's own: refused, nothing removed
    (out / flowfiles.MANIFEST).write_text(json.dumps({"files": ["../notes.txt", "flows.csv"]}))
    assert spw.main(base) == 2
    assert "lists '../notes.txt', which no export writes" in capsys.readouterr().err
    assert (out / "notes.txt").exists() and (out / "flows.csv").exists()


# ---------------------------------------------------------------------------------------------
# names: subjects and clips as one path component, never shared, text in pandas

def write_flows(root, rows):
    """A FLOWS CSV of small random .npy flows: rows of (subject, clip, emotion)."""
    rng = np.random.default_rng(0)
    out = []
    for k, (subject, clip, emotion) in enumerate(rows):
        np.save(root / f"f{k}.npy", rng.normal(0, 1, (16, 16, 2)).astype(np.float32))
        out.append(dict(subject=subject, clip=clip, emotion=emotion, flow=f"f{k}.npy"))
    pd.DataFrame(out).to_csv(root / "flows_in.csv", index=False)
    return str(root / "flows_in.csv")


def test_odd_subject_names_train_to_their_summary_and_export_apart(tmp_path, capsys):
    subjects = ["site1/P01", "a_b", "a/b"]
    csv = write_flows(tmp_path, [(s, c, e) for s in subjects
                                 for c, e in (("01", "negative"), ("x", "surprise"))])
    run = tmp_path / "run"
    argv = tiny("--catego", "FLOWS", "--path", csv, "--img_root", str(tmp_path), "--cache_dir",
                str(tmp_path / "cache"), "--model", "SSSN", "--image_mode", "F", "--weight_save_path",
                str(run))
    assert train.main(argv) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["folds"] == 3 and s["samples"] == 6
    assert sorted(os.listdir(run / "folds")) == sorted(["site1%2FP01.json", "a_b.json", "a%2Fb.json"])
    assert all(os.path.dirname(runfolder.fold_path(str(run), h)) == str(run / "folds") for h in subjects)
    assert train.main(argv) == 0   # every fold counted as finished: nothing trained again
    assert capsys.readouterr().out.count("done earlier, kept") == 3
    # exported: one folder per subject, the digit-only clip text in pandas, read back as they were
    samples = dl.read_samples(csv, str(tmp_path), "FLOWS")
    out = tmp_path / "out"
    assert flowfiles.export(samples, str(tmp_path / "cache"), str(out), folds=True) == 6
    assert sorted(os.listdir(out / "flo")) == sorted(["site1%2FP01", "a_b", "a%2Fb"])
    comp = pd.read_csv(out / flowfiles.EXPORT["images_csv"])
    assert sorted(set(comp.filename_o)) == ["clip_01", "x"] and all(isinstance(x, str) for x in comp["sub"])
    assert sorted(os.listdir(out / flowfiles.EXPORT["folds"])) == sorted(["site1%2FP01", "a_b", "a%2Fb"])
    back = dl.read_samples(str(out / "flows.csv"), str(out), "FLOWS")
    assert sorted(zip(back.table.subject, back.table.filename, back.table.emotion)) == \
        sorted(zip(samples.table.subject, samples.table.filename, samples.table.emotion))
    # two samples that would share the composite's image name: refused before anything is written
    clash = write_flows(tmp_path, [("a_b", "c", "negative"), ("a", "b_c", "surprise")])
    with pytest.raises(datasets.DataError, match=r"^--export: samples a_b/c@0 and a/b_c@0 would both be "
                                                 r"written as a_b_c: rename one of them "
                                                 r"\(subject or clip\)$"):
        flowfiles.export(dl.read_samples(clash, str(tmp_path), "FLOWS"), str(tmp_path / "cache"),
                         str(tmp_path / "out2"))
    assert not (tmp_path / "out2").exists()


# ---------------------------------------------------------------------------------------------
# a composite's export read back in every layout: subjects, clips, classes and datasets

def test_composite_export_reads_back_its_datasets_in_every_layout(demo, tmp_path):
    # The demo's 3-class samples as a composite of three datasets (subjects prefixed as
    # dataloader.read_samples prefixes them), over copies of their caches under those names
    s = dl.read_samples(demo["sheet"], demo["root"], "CASME", num_classes=3)
    parts = {"01": ("CASME", "casme2_01"), "02": ("CASME", "casme2_02"), "03": ("SAMM", "samm_003"),
             "04": ("SMIC", "smic_s4")}
    for old, (_, new) in parts.items():
        src = builders.cache_folder(demo["cache"], old)
        shutil.copytree(src, tmp_path / "cache" / src.parent.name / new)
    t = s.table.assign(dataset=[parts[x][0] for x in s.table.subject],
                       subject=[parts[x][1] for x in s.table.subject])
    comp = datasets.Samples(t, s.classes, "COMPOSITE", [])
    out = tmp_path / "out"
    assert flowfiles.export(comp, str(tmp_path / "cache"), str(out), folds=True) == 16
    want = sorted(zip(t.subject, t.filename,
                      t.emotion.map(dict(zip(t.emotion, [s.classes[k] for k in t.label]))),
                      t.dataset.map({"CASME": "casme2", "SAMM": "samm", "SMIC": "smic"})))
    for csv, root in ((out / "flows.csv", out),
                      (out / flowfiles.EXPORT["images_csv"], out / flowfiles.EXPORT["images"]),
                      (None, out / flowfiles.EXPORT["folds"])):
        back = dl.read_samples(csv and str(csv), str(root), "FLOWS")
        got = sorted(zip(back.table.subject, back.table.filename,
                         [back.classes[k] for k in back.table.label], back.table.dataset))
        assert got == want, csv
        assert [d for d, _, _ in dl.lodo_splits(back.table.dataset)] == ["casme2", "samm", "smic"]
    # per-dataset scores and --protocol lodo on the per-fold layout read back
    run = tmp_path / "lodo"
    assert train.main(tiny("--catego", "FLOWS", "--img_root", str(out / flowfiles.EXPORT["folds"]),
                           "--cache_dir", str(tmp_path / "c2"), "--model", "SSSN", "--image_mode", "S",
                           "--protocol", "lodo", "--weight_save_path", str(run))) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert {k: v["n"] for k, v in summary["per_dataset"].items()} == {"casme2": 8, "samm": 4, "smic": 4}


# ---------------------------------------------------------------------------------------------
# a model trained on the composite's 8-bit images predicts a new clip from its frames

def test_model_of_composite_images_predicts_a_clip_with_its_cam(demo, demo_export3, tmp_path):
    csv = os.path.join(demo_export3, flowfiles.EXPORT["images_csv"])
    roots = [os.path.join(demo_export3, flowfiles.EXPORT[k]) for k in ("images", "apex")]
    cache, run = str(tmp_path / "cache"), tmp_path / "final"
    assert train.main(tiny("--catego", "FLOWS", "--path", csv, "--img_root", *roots, "--cache_dir", cache,
                           "--model", "DSSN", "--image_mode", "S", "G", "--final",
                           "--weight_save_path", str(run))) == 0
    weights = str(run / "final.pt")
    ckpt = torch.load(weights, weights_only=True)
    # what the streams were
    assert ckpt["preprocess"] == {"image": pp.file_settings("image", "fixed") | dict(
        scaling="u, v, strain min-max scaled per image and channel", image_size=[[28, 28]])}
    flows = dl.read_samples(csv, roots, "FLOWS")
    data = dl.load_streams(flows, cache, ["S", "G"])
    where = {(sub, f): i for i, (sub, f) in enumerate(zip(data.subjects, data.filenames))}
    s = dl.read_samples(demo["sheet"], demo["root"], "CASME", num_classes=3)
    for row in s.table[s.table.subject == "01"].itertuples():
        out, extra = predict.predict(weights, onset=row.onset_path, apex=row.apex_path,
                                     cam=str(tmp_path / "cam.png"))
        # the new clip's frames made into the very streams the model was trained on
        i = where[(f"casme2_{row.subject}", row.filename)]
        xs = predict.streams(extra["feats"], ckpt["image_mode"])
        assert all(torch.equal(x, torch.from_numpy(data.x[k, i:i + 1]).permute(0, 3, 1, 2))
                   for k, x in enumerate(xs)), row.filename
        assert "F" not in extra["feats"] and out["prediction"] in ["negative", "positive", "surprise"]
        assert len(extra["cams"]) == 2 and os.path.getsize(tmp_path / "cam.png") > 0
    # a model of two kinds of flow file: no new clip can be made into both
    ckpt["preprocess"]["image"]["image_size"] = [[28, 28], [64, 64]]
    torch.save(ckpt, tmp_path / "sizes.pt")
    with pytest.raises(predict.PredictError, match=r"sizes.pt: trained on 8-bit flow images of sizes 28x28, "
                                                   r"64x64: a new clip's flow image is made at one "
                                                   r"square size"):
        predict.predict(str(tmp_path / "sizes.pt"), onset=row.onset_path, apex=row.apex_path)
    ckpt["preprocess"]["float"] = pp.file_settings("float", "fixed")
    torch.save(ckpt, tmp_path / "mixed.pt")
    with pytest.raises(predict.PredictError, match="trained on flow files of several kinds"):
        predict.predict(str(tmp_path / "mixed.pt"), onset=row.onset_path, apex=row.apex_path)


def test_ststnet_stream_is_the_image_as_its_script_reads_it(demo, demo_export3, tmp_path):
    # O: the 28x28 image, not enlarged, in cv2.imread's BGR order (STSTNet's main.py); from frames
    # the image --export writes (the float flow's, area-resized, min-max per channel)
    images = os.path.join(demo_export3, flowfiles.EXPORT["images"])
    a, sa = flow_streams(os.path.join(demo_export3, flowfiles.EXPORT["images_csv"]), images,
                         tmp_path / "a", ["O"])
    assert sa.x.shape[2:] == (28, 28, 3) and "O" in dl.stream_modes(a)
    for k, path in enumerate(a.table.flow_path):
        assert np.array_equal(sa.x[0, k], cv2.imread(path)), path
    f = dl.read_samples(demo["sheet"], demo["root"], "CASME")
    sf = dl.load_streams(f, demo["cache"], ["O"])
    checked = 0
    for k, (s, clip) in enumerate(zip(sf.subjects, sf.filenames)):
        path = os.path.join(images, f"casme2_{s}_{clip} .png")   # the 3-class export has no "others"
        if os.path.isfile(path):
            assert np.array_equal(sf.x[0, k], cv2.imread(path)), (s, clip)
            checked += 1
    assert checked == len(a.table) == 16
    with pytest.raises(datasets.DataError, match="one size"):
        dl.load_streams(f, demo["cache"], ["O", "S"])
