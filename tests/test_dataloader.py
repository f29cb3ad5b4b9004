"""Every dataset from its native files: CASME II .xlsx, SAMM .xlsx, SMIC folder trees, the port's
CSV, the MEGC 2019 composite, CAS(ME)^3 Part A and CUSTOM CSVs, built small from the demo's
astronaut frames (make_demo)."""
import importlib
import os
import shutil

import cv2
import openpyxl
import pandas as pd
import pytest

import builders
import caches
import dataloader as dl
import datasets
import make_demo
import save_preprocess_weight as spw

# demo class -> the SAMM emotion / SMIC folder that stands in for it (SMIC has no "others")
SAMM_OF = {"happiness": "Happiness", "disgust": "Anger", "repression": "Contempt",
           "surprise": "Surprise", "others": "Other"}
SMIC_OF = {"happiness": "positive", "disgust": "negative", "repression": "negative", "surprise": "surprise"}
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
               "Duration", "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]
FIRST = 5561   # SAMM-like frame numbers: 5561, 5562, 5563 for the demo's img1..img3


def write_samm_sheet(path, rows):
    """SAMM_Micro_FACS_Codes_v2.xlsx's shape: 13 note rows, the header on row 14."""
    wb = openpyxl.Workbook()
    ws = wb.active
    for i in range(1, 14):
        ws.cell(i, 1, f"SAMM micro-movement FACS codes, note line {i}" if i % 4 else None)
    for j, name in enumerate(SAMM_HEADER, 1):
        ws.cell(14, j, name)
    for i, row in enumerate(rows, 15):
        for j, v in enumerate(row, 1):
            ws.cell(i, j, v)
    wb.save(path)


def casme_sheet(path, rows):
    """A CASME2-coding-*.xlsx: the demo's columns plus two blank ones (make_demo mimics them)."""
    df = pd.DataFrame(rows, columns=make_demo.COLUMNS).assign(**{"": " ", " ": " "})
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        df.to_excel(xw, index=False)
        for r in range(2, len(df) + 2):
            xw.sheets["Sheet1"].cell(r, 1).number_format = "@"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """CASME (demo), SAMM and SMIC HS/VIS/NIR trees and sheets from the same 10 demo clips."""
    base = tmp_path_factory.mktemp("data")
    casme = str(base / "casme")
    sheet = make_demo.build_demo(casme, subjects=2, clips_per_class=1, frames=3)
    df = pd.read_excel(sheet, dtype=str)
    img = lambda r, t: os.path.join(casme, f"sub{r.Subject}", r.Filename, f"img{t}.jpg")

    samm, rows = base / "SAMM", []
    clips = df.rename(columns={"Estimated Emotion": "emotion"})
    for i, r in enumerate(clips.itertuples(), 1):
        subject = {"01": "006", "02": "007"}[r.Subject]
        clip = samm / subject / f"{subject}_{i}_1"
        clip.mkdir(parents=True)
        for t in (1, 2, 3):   # 006 padded as most copies, 007 unpadded as some
            n = FIRST + t - 1
            shutil.copy(img(r, t),
                        clip / (f"{subject}_{n:05d}.jpg" if subject == "006" else f"{subject}_{n}.jpg"))
        # numeric Subject cells (6, not "006") and unpadded frame numbers, as the sheet stores them
        rows.append([int(subject), clip.name, "1", FIRST, FIRST + int(r.ApexFrame) - 1, FIRST + 2, 3, "Micro",
                     "AU", SAMM_OF[r.emotion], "1", None])
    rows.append([7, "007_99_1", "1", 10, 11, 12, 3, "Micro", "AU", "Fear", "7", None])   # no frames
    write_samm_sheet(base / "SAMM_Micro_FACS_Codes_v2.xlsx", rows)

    smic = base / "SMIC"
    for r in clips.itertuples():
        if r.emotion not in SMIC_OF:
            continue
        s, cls = f"s{int(r.Subject)}", SMIC_OF[r.emotion]
        clip = f"{s}_{cls[:2]}_{r.Filename[2:4]}"
        for kind, name, ext in [("HS", "image{:06d}", ".bmp"), ("VIS", "image{}", ".jpg"),
                                ("NIR", "reg_image{}", ".bmp")]:
            d = smic / kind / s / "micro" / cls / clip
            d.mkdir(parents=True)
            for t in (1, 2, 3):   # numbers 99, 100, 101: a name sort would put 100 first
                f = d / (name.format(98 + t) + ext)
                if ext == ".bmp":
                    cv2.imwrite(str(f), cv2.imread(img(r, t)))
                else:
                    shutil.copy(img(r, t), f)
    (smic / "HS" / "s1" / "non_micro" / "x" / "s1_x_01").mkdir(parents=True)   # not micro: ignored
    return dict(base=base, casme=casme, sheet=sheet, df=df, samm=str(samm),
                samm_sheet=str(base / "SAMM_Micro_FACS_Codes_v2.xlsx"), smic=str(smic))


def counts(samples, by="label"):
    t = samples.table
    return t[by].map(samples.classes.__getitem__).value_counts().to_dict() if by == "label" else \
        t[by].value_counts().to_dict()


# ---------------------------------------------------------------------------------------------
# each dataset from its native files

def test_casme_xlsx_with_blank_columns(data, tmp_path):
    s = dl.read_samples(data["sheet"], data["casme"], "CASME")
    t = s.table
    assert s.classes == ["happiness", "disgust", "repression", "surprise", "others"]
    assert len(t) == 10 and sorted(t.subject.unique()) == ["01", "02"]
    assert set(t.dataset) == {"CASME"} and set(t.face) == {"dlib"}
    assert all(os.path.isfile(p) for p in [*t.onset_path, *t.apex_path])
    assert t.onset_path[0].endswith(os.path.join("sub01", t.filename[0], "img1.jpg"))
    # a one-element list is the same as the str
    pd.testing.assert_frame_equal(dl.read_samples([data["sheet"]], [data["casme"]], "CASME").table, t)
    # the `Cropped` layout: reg_imgN.jpg frames, no alignment needed
    cropped = tmp_path / "Cropped"
    shutil.copytree(data["casme"], cropped, ignore=shutil.ignore_patterns("*.xlsx"))
    for dirpath, _, files in os.walk(cropped):
        for f in files:
            os.rename(os.path.join(dirpath, f), os.path.join(dirpath, "reg_" + f))
    c = dl.read_samples(data["sheet"], str(cropped), "CASME").table
    assert set(c.face) == {"none"} and c.onset_path[0].endswith("reg_img1.jpg")
    assert all(os.path.isfile(p) for p in c.apex_path)


def test_casme_apex_slash_uses_middle_frame(data, tmp_path):
    rows = pd.read_excel(data["sheet"], dtype=str).iloc[:, :7].values.tolist()
    rows[3][3] = "/"
    casme_sheet(tmp_path / "CASME2-coding-x.xlsx", rows)
    s = dl.read_samples(str(tmp_path / "CASME2-coding-x.xlsx"), data["casme"], "CASME")
    assert s.table.apex[3] == 2   # (1 + 3) // 2
    assert any("middle frame 2 used" in n and f"{rows[3][0]}/{rows[3][1]}@1" in n and "row 5" in n
               for n in s.notes)
    assert "middle frame" in datasets.describe(s)


def test_port_csv(data, tmp_path):
    df = data["df"]
    csv = tmp_path / "casme.csv"
    pd.DataFrame({"Subject": df.Subject.astype(int), "Filename": df.Filename, "Onset": df.OnsetFrame,
                  "Apex": df.ApexFrame,
                  "Estimated Emotion": df["Estimated Emotion"]}).to_csv(csv, index=False)
    s = dl.read_samples(str(csv), data["casme"], "CASME")
    ref = dl.read_samples(data["sheet"], data["casme"], "CASME")
    assert s.table.subject.tolist() == ref.table.subject.tolist()   # 1 -> "01"
    assert s.table.apex_path.tolist() == ref.table.apex_path.tolist()


def test_samm_xlsx_note_rows_padded_and_unpadded(data):
    s = dl.read_samples(data["samm_sheet"], data["samm"], "SAMM")
    t = s.table
    assert s.classes == ["anger", "contempt", "happiness", "surprise", "other"]
    assert len(t) == 10 and sorted(t.subject.unique()) == ["006", "007"]   # Fear dropped
    assert any("fear 1" in n for n in s.notes)
    assert all(os.path.isfile(p) for p in [*t.onset_path, *t.apex_path])
    on = dict(zip(t.subject, t.onset_path))
    assert on["006"].endswith("006_05561.jpg") and on["007"].endswith("007_5561.jpg")
    s3 = dl.read_samples(data["samm_sheet"], data["samm"], "SAMM", 3)   # Other dropped, Fear kept
    assert counts(s3) == {"negative": 5, "positive": 2, "surprise": 2}
    assert spw.missing(s3) == [("clip folder", os.path.join(data["samm"], "007", "007_99_1"), 1,
                               f"{data['samm_sheet']}: row 25")]


@pytest.mark.parametrize("kind", ["HS", "VIS", "NIR"])
def test_smic_from_folders(data, kind):
    s = dl.read_samples(None, os.path.join(data["smic"], kind), "SMIC")
    t = s.table
    assert s.classes == ["negative", "positive", "surprise"] and set(t.dataset) == {"SMIC"}
    assert counts(s) == {"negative": 4, "positive": 2, "surprise": 2}
    assert sorted(t.subject.unique()) == ["s1", "s2"] and t.filename.str.match(r"s\d_(ne|po|su)_\d\d").all()
    assert (t.onset == 99).all() and (t.apex == 100).all()   # first frame by number; middle as apex
    assert all(os.path.isfile(p) for p in [*t.onset_path, *t.apex_path])
    assert set(t.face) == ({"none"} if kind == "NIR" else {"dlib"})
    assert ("no apex annotation: the middle frame between onset and offset is the apex of all 8 clips"
            in s.notes)
    assert dl.read_samples([], [os.path.join(data["smic"], kind)], "SMIC").table.equals(t)


def test_smic_frames_decode_and_cache(data, tmp_path):
    s = dl.read_samples(None, os.path.join(data["smic"], "HS"), "SMIC")
    one = datasets.Samples(s.table.iloc[:1], s.classes, s.catego, [])
    assert caches.build_caches(one, str(tmp_path / "cache"), quiet=True) == []
    assert dl.load_streams(one, str(tmp_path / "cache"), ["F"]).x.shape == (1, 1, 227, 227, 3)
    # a cache of one flow method is never read as the other's: each has its own
    with pytest.raises(datasets.DataError, match="cache missing"):
        dl.load_streams(one, str(tmp_path / "cache"), ["F"], flow="opencv")
    assert caches.build_caches(one, str(tmp_path / "cache"), quiet=True, flow="opencv") == []
    ipol, opencv = (dl.load_streams(one, str(tmp_path / "cache"), ["F"], flow=f).x
                    for f in ("ipol", "opencv"))
    assert ipol.shape == opencv.shape == (1, 1, 227, 227, 3) and (ipol != opencv).any()


def test_composite(data):
    s = dl.read_samples([data["sheet"], data["samm_sheet"]],
                        [data["casme"], data["samm"], os.path.join(data["smic"], "HS")], "COMPOSITE")
    t = s.table
    assert s.catego == "COMPOSITE" and s.classes == ["negative", "positive", "surprise"]
    assert counts(s, "dataset") == {"CASME": 8, "SAMM": 9, "SMIC": 8}
    assert counts(s) == {"negative": 4 + 5 + 4, "positive": 2 + 2 + 2, "surprise": 2 + 2 + 2}
    for d, g in t.groupby("dataset"):   # the label follows the class name, not the part's index
        assert (g.label.map(s.classes.__getitem__) == g.emotion.map(
            {e: c for c, es in datasets.class_set(d, 3).items() for e in es})).all()
    assert sorted(t.subject.unique()) == ["casme2_01", "casme2_02", "samm_006", "samm_007",
                                          "smic_s1", "smic_s2"]
    assert len({(r.subject, r.filename) for r in t.itertuples()}) == len(t)
    assert [sub for sub, _, _ in dl.loso_splits(t.subject)] == sorted(t.subject.unique())
    text = datasets.describe(s)
    assert "CASME disgust, repression; SAMM anger, contempt, disgust, fear, sadness; SMIC negative" in text
    assert any(n.startswith("CASME: dropped 2") for n in s.notes)


# ---------------------------------------------------------------------------------------------
# the emotions of the sheets as distributed (CASME2-coding-20140508.xlsx, SAMM_Micro_FACS_Codes_v2.xlsx),
# frames as empty files

CASME_EMOTIONS = {"others": 99, "disgust": 63, "happiness": 32, "repression": 27, "surprise": 25,
                  "sadness": 7, "fear": 2}
SAMM_EMOTIONS = {"Anger": 57, "Other": 26, "Happiness": 26, "Surprise": 15, "Contempt": 12,
                 "Disgust": 9, "Fear": 8, "Sadness": 6}


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()


def test_casme_real_counts(tmp_path):
    emotions = [e for e, n in CASME_EMOTIONS.items() for _ in range(n)]
    rows = []
    for i, e in enumerate(emotions):
        subject, clip = f"{i % 26 + 1:02d}", f"EP{i // 26 + 1:02d}_01f"
        rows.append([subject, clip, "10", "/" if (subject, clip) == ("04", "EP02_01f") else "15", "20",
                     "", e])
        touch(tmp_path / "raw" / f"sub{subject}" / clip / "img10.jpg")
    casme_sheet(tmp_path / "CASME2-coding-20140508.xlsx", rows)
    sheet, root = str(tmp_path / "CASME2-coding-20140508.xlsx"), str(tmp_path / "raw")
    s = dl.read_samples(sheet, root, "CASME", 5)
    assert len(s.table) == 246 and s.table.subject.nunique() == 26
    assert "dropped 9 (not in the 5-class set): sadness 7, fear 2" in s.notes
    assert s.table.set_index(["subject", "filename"]).apex["04", "EP02_01f"] == 15   # "/": (10 + 20) // 2
    assert (f"{sheet}: row 31: apex '/' is not a number (04/EP02_01f@10, offset 20): "
            "middle frame 15 used (missing: the clip has no frame after the onset)" in s.notes)
    s3 = dl.read_samples(sheet, root, "CASME", 3)
    assert counts(s3) == {"negative": 90, "positive": 32, "surprise": 25}


def test_samm_real_counts(tmp_path):
    five = [e for e, n in SAMM_EMOTIONS.items() for _ in range(n)
            if e.lower() in datasets.class_set("SAMM", 5)]
    other = [e for e, n in SAMM_EMOTIONS.items() for _ in range(n)
             if e.lower() not in datasets.class_set("SAMM", 5)]
    subjects = [f"{k:03d}" for k in range(6, 6 + 29)]
    # 27 subjects share the 5-class rows; the last 2 have only disgust / fear / sadness
    pairs = [(subjects[i % 27], e) for i, e in enumerate(five)] + \
            [(subjects[27 + i % 2], e) for i, e in enumerate(other)]
    rows = []
    for i, (subject, e) in enumerate(pairs):
        clip = f"{subject}_{i}_1"
        rows.append([subject, clip, "1", 562, 570, 580, 19, "Micro", "AU", e, "1", None])
        touch(tmp_path / "SAMM" / subject / clip / f"{subject}_{562:05d}.jpg")
    write_samm_sheet(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", rows)
    sheet, root = str(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx"), str(tmp_path / "SAMM")
    s = dl.read_samples(sheet, root, "SAMM")
    assert len(s.table) == 136 and s.table.subject.nunique() == 27
    assert "dropped 23 (not in the 5-class set): disgust 9, fear 8, sadness 6" in s.notes
    s3 = dl.read_samples(sheet, root, "SAMM", 3)
    assert len(s3.table) == 133 and s3.table.subject.nunique() == 29
    assert counts(s3) == {"negative": 92, "positive": 26, "surprise": 15}   # MEGC 2019's SAMM counts


# ---------------------------------------------------------------------------------------------
# bad inputs: one line naming what is wrong

def error(*args, **kw):
    with pytest.raises(datasets.DataError) as e:
        dl.read_samples(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_inputs(data, tmp_path):
    casme, sheet = data["casme"], data["sheet"]
    df = data["df"]
    no_emotion = tmp_path / "no_emotion.csv"
    df.drop(columns="Estimated Emotion").to_csv(no_emotion, index=False)
    assert "missing column Estimated Emotion" in error(str(no_emotion), casme, "CASME")
    assert "'CASME4' unknown" in error(sheet, casme, "CASME4")
    header_only = tmp_path / "header.csv"
    df.iloc[:0].to_csv(header_only, index=False)
    assert "header but no rows" in error(str(header_only), casme, "CASME")
    (tmp_path / "empty.xlsx").write_bytes(b"")
    open(tmp_path / "empty.csv", "w").close()
    assert "sheet is empty" in error(str(tmp_path / "empty.csv"), casme, "CASME")
    assert str(tmp_path / "empty.xlsx") in error(str(tmp_path / "empty.xlsx"), casme, "CASME")
    assert "coding sheet not found" in error(str(tmp_path / "nope.xlsx"), casme, "CASME")
    (tmp_path / "elsewhere").mkdir()
    msg = error(sheet, str(tmp_path / "elsewhere"), "CASME")
    assert "no onset frame" in msg and os.path.join("elsewhere", "sub01") in msg
    assert "dataset folder not found" in error(sheet, str(tmp_path / "nope"), "CASME")
    dup = tmp_path / "dup.csv"
    pd.concat([df, df.iloc[[2]]]).to_csv(dup, index=False)
    assert f"{dup}: row 12: duplicate sample 01/{df.Filename[2]}@1" in error(str(dup), casme, "CASME")
    assert "--num_classes 5 does not fit SMIC" in error(None, os.path.join(data["smic"], "HS"), "SMIC", 5)
    assert "--num_classes 4 does not fit CASME" in error(sheet, casme, "CASME", 4)
    msg = error(None, data["smic"], "SMIC")   # the folder above HS / VIS / NIR
    assert "no SMIC clip folders" in msg and "HS, NIR, VIS" in msg
    bare = tmp_path / "bare"
    (bare / "s1" / "micro" / "negative" / "s1_ne_01").mkdir(parents=True)
    assert "no clip folder holds frames like image123.bmp" in error(None, str(bare), "SMIC")
    assert "takes 0 coding sheets" in error(sheet, os.path.join(data["smic"], "HS"), "SMIC")
    assert "takes 1 coding sheet and 1 dataset folder" in error(None, casme, "CASME")
    msg = error([sheet], [casme, data["samm"], data["smic"]], "COMPOSITE")
    assert "takes 2 coding sheets (CASME, SAMM)" in msg and "got 1 sheet and 3 folders" in msg


# ---------------------------------------------------------------------------------------------
# the scripts: --check and `error: ...` with exit status 2

def test_check_reports_missing_subject_folder_once(data, tmp_path, capsys):
    root = tmp_path / "casme"
    shutil.copytree(data["casme"], root)
    shutil.rmtree(root / "sub02")
    shutil.rmtree(root / "sub01" / data["df"].Filename[0])
    assert spw.main(["--csv_path", data["sheet"], "--root", str(root), "--catego", "CASME", "--check"]) == 1
    out = capsys.readouterr().out
    assert f"missing subject folder: {root / 'sub02'}  (5 samples, first {data['sheet']}: row 7)" in out
    assert f"missing clip folder: {root / 'sub01' / data['df'].Filename[0]}  ({data['sheet']}: row 2)" in out
    assert "missing frame:" not in out and out.count("  missing ") == 2
    assert "2 missing frames or folders, 6 of 10 samples affected" in out
    assert "others" in out and "per subject: 01:5, 02:5" in out


def test_check_smic_and_composite(data, capsys):
    hs = os.path.join(data["smic"], "HS")
    assert spw.main(["--root", hs, "--catego", "SMIC", "--check"]) == 0
    out = capsys.readouterr().out
    assert "SMIC: 8 samples, 2 subjects, 3-class set" in out and "0 missing" in out
    code = spw.main(["--catego", "COMPOSITE", "--csv_path", data["sheet"], data["samm_sheet"],
                     "--root", data["casme"], data["samm"], hs, "--check"])
    out = capsys.readouterr().out
    assert code == 1 and "missing clip folder" in out and "007_99_1" in out   # SAMM's Fear row
    assert "COMPOSITE: 25 samples, 6 subjects" in out and "samm_007:5" in out


def test_script_errors_are_one_line(data, capsys):
    assert spw.main(["--root", data["smic"], "--catego", "SMIC", "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert spw.main(["--root", data["casme"], "--catego", "COMPOSITE", "--check"]) == 2
    assert "COMPOSITE takes 2 coding sheets" in capsys.readouterr().err


def test_one_class_is_an_error_and_single_sample_subjects_are_reported(data, tmp_path):
    df = data["df"]
    happy = df[df["Estimated Emotion"] == "happiness"]
    casme_sheet(tmp_path / "one_class.xlsx", happy.iloc[:, :7].values.tolist())
    with pytest.raises(datasets.DataError) as e:
        dl.read_samples(str(tmp_path / "one_class.xlsx"), data["casme"], "CASME")
    assert "only one class (happiness)" in str(e.value) and "\n" not in str(e.value)
    # subject 02 keeps one clip: fine for LOSO, but said
    rows = pd.concat([df[df.Subject == "01"], df[df.Subject == "02"].iloc[:1]])
    casme_sheet(tmp_path / "single.xlsx", rows.iloc[:, :7].values.tolist())
    s = dl.read_samples(str(tmp_path / "single.xlsx"), data["casme"], "CASME")
    assert "subjects with a single sample: 02" in datasets.describe(s)


# --- flags checked at parse time by every script (dataloader's argparse types) ---------------
NO = "/nonexistent/dssn"   # never read: the flag must be refused first
REFUSED = [
    ("train", ["--path", NO, "--img_root", NO, "--epochs", "0"], "--epochs"),
    ("train", ["--path", NO, "--img_root", NO, "--epochs", "-3"], "--epochs"),
    ("train", ["--path", NO, "--img_root", NO, "--batch_size", "0"], "--batch_size"),
    ("train", ["--path", NO, "--img_root", NO, "--learning_rate", "-1"], "--learning_rate"),
    ("train", ["--path", NO, "--img_root", NO, "--learning_rate", "nan"], "--learning_rate"),
    ("train", ["--path", NO, "--img_root", NO, "--shard", "0/2"], "--shard"),
    ("train", ["--path", NO, "--img_root", NO, "--shard", "3/2"], "--shard"),
    ("train", ["--path", NO, "--img_root", NO, "--shard", "two"], "--shard"),
    ("train", ["--path", NO, "--img_root", NO, "--workers", "0"], "--workers"),
    ("train", ["--path", NO, "--img_root", NO, "--workers", "-2"], "--workers"),
    ("train", ["--path", NO, "--img_root", NO, "--seed", "-1"], "--seed"),
    ("train", ["--path", NO, "--img_root", NO, "--num_classes", "0"], "--num_classes"),
    ("save_preprocess_weight", ["--root", NO, "--catego", "CASME", "--workers", "0"], "--workers"),
    ("save_preprocess_weight", ["--root", NO, "--catego", "CASME", "--show", "-1"], "--show"),
    ("save_preprocess_weight", ["--root", NO, "--catego", "CASME", "--num_classes", "x"], "--num_classes"),
    ("variants", ["--path", NO, "--img_root", NO, "--epochs", "0"], "--epochs"),
    ("variants", ["--path", NO, "--img_root", NO, "--batch_size", "-1"], "--batch_size"),
    ("variants", ["--path", NO, "--img_root", NO, "--learning_rate", "0"], "--learning_rate"),
    ("variants", ["--path", NO, "--img_root", NO, "--workers", "0"], "--workers"),
    ("predict", ["--weights", NO, "--video", NO, "--onset_frame", "-1"], "--onset_frame"),
    ("predict", ["--weights", NO, "--video", NO, "--onset_frame", "0", "--window", "0"], "--window"),
    ("predict", ["--weights", NO, "--video", NO, "--onset_frame", "0", "--apex_frame", "-2"], "--apex_frame"),
    ("bench", ["--batch", "0"], "--batch"),
    ("bench", ["--epochs", "1"], "--epochs"),
    ("make_demo", ["--root", NO, "--frames", "2"], "--frames"),
    ("make_demo", ["--root", NO, "--subjects", "0"], "--subjects"),
    ("make_demo", ["--root", NO, "--size", "320", "0"], "--size"),
    ("utils", ["samm_rename", "--root", NO, "--width", "0"], "--width"),
]


@pytest.mark.parametrize("script, argv, flag", REFUSED, ids=[f"{s}{a[-2]}{a[-1]}" for s, a, _ in REFUSED])
def test_numeric_flags_are_refused_at_parse_time(script, argv, flag, capsys):
    main = importlib.import_module(script).main
    with pytest.raises(SystemExit) as e:   # argparse's exit: nothing after parsing ran
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: argument {flag}" in err, err


# ---------------------------------------------------------------------------------------------
# CAS(ME)^3 Part A and CUSTOM (any dataset from a CSV), built from the demo's faces

@pytest.fixture(scope="module")
def casme3(tmp_path_factory):
    """3 subjects x task a (happy, disgust, surprise) + task b (anger, others, fear, sad), 4 frames
    a clip, the clips of a task one after another in one video: 21 samples."""
    root = tmp_path_factory.mktemp("casme3") / "A"
    sheet = builders.build_casme3(str(root), subjects=3, frames=4)
    return dict(root=str(root), sheet=sheet, df=pd.read_excel(sheet, dtype=str))


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom")
    csv = builders.build_custom(str(root), subjects=3, frames=4)   # clips/P1_happy/frame_0012.png ...
    return dict(root=str(root), csv=csv, df=pd.read_csv(csv))


def write_casme3(path, df):
    """A cas(me)3 sheet with numeric frame cells, as the distributed one."""
    df = df.copy()
    for c in ("Onset", "Apex", "Offset"):
        df[c] = [int(v) if str(v).isdigit() else v for v in df[c]]
    df.to_excel(path, index=False)
    return str(path)


def test_casme3_native_layout_and_class_sets(casme3):
    s = dl.read_samples(casme3["sheet"], casme3["root"], "CASME3")
    t = s.table
    assert s.classes == ["negative", "positive", "surprise"]
    assert counts(s) == {"negative": 12, "positive": 3, "surprise": 3}   # others dropped
    assert "dropped 3 (not in the 3-class set): others 3" in s.notes
    assert sorted(t.subject.unique()) == ["spNO.1", "spNO.2", "spNO.3"] and set(t.face) == {"dlib"}
    assert all(os.path.isfile(p) for p in [*t.onset_path, *t.apex_path])
    # one task video, several micro-expressions: (subject, filename) repeats, the onset tells them apart
    a = t[(t.subject == "spNO.1") & (t.filename == "a")]
    assert a.onset.tolist() == [1, 5, 9] and a.onset_path.tolist() == [
        os.path.join(casme3["root"], "spNO.1", "a", "color", f"{n}.jpg") for n in (1, 5, 9)]
    assert len({path for _, path, _, _ in caches.cache_jobs(s, "c", "fixed", "auto", "ipol")}) == len(t)
    assert len({datasets.sample_id(r) for r in t.to_dict("records")}) == len(t)
    assert [sub for sub, _, _ in dl.loso_splits(t.subject)] == ["spNO.1", "spNO.2", "spNO.3"]
    s4 = dl.read_samples(casme3["sheet"], casme3["root"], "CASME3", 4)
    assert counts(s4) == {"negative": 12, "positive": 3, "surprise": 3, "others": 3}
    s7 = dl.read_samples(casme3["sheet"], casme3["root"], "CASME3", 7)
    assert s7.classes == ["happy", "disgust", "fear", "anger", "sad", "surprise", "others"]
    assert len(s7.table) == len(casme3["df"]) == 21 and counts(s7) == {e: 3 for e in s7.classes}
    assert (s7.table.emotion == casme3["df"].emotion).all()
    assert "--num_classes 5 does not fit CASME3" in error(casme3["sheet"], casme3["root"], "CASME3", 5)
    s2 = dl.read_samples(casme3["sheet"], casme3["root"], "CASME3", 7, classes=["happy", "surprise"])
    assert s2.classes == ["happy", "surprise"] and len(s2.table) == 6


def test_casme3_sheet_slips_use_the_middle_frame_and_are_listed(casme3, tmp_path, capsys):
    df = casme3["df"].copy()
    i = df.index[(df.Subject == "spNO.2") & (df.Filename == "b")][0]   # anger: frames 1..4
    df.loc[i, "Apex"] = "1"                                              # = onset (as spNO.142 i)
    j = df.index[(df.Subject == "spNO.3") & (df.Filename == "a")][1]   # disgust: frames 5..8
    df.loc[j, "Apex"] = "3"                                              # before onset (spNO.149 d)
    k = df.index[(df.Subject == "spNO.1") & (df.Filename == "a")][2]   # surprise: frames 9..12
    df.loc[k, "Apex"] = "14"                                             # after offset
    sheet = write_casme3(tmp_path / builders.CASME3_SHEET, df)
    s = dl.read_samples(sheet, casme3["root"], "CASME3")
    assert len(s.table) == 18   # nothing skipped
    apex = s.table.set_index(["subject", "filename", "onset"]).apex
    assert apex["spNO.2", "b", 1] == 2 and apex["spNO.3", "a", 5] == 6 and apex["spNO.1", "a", 9] == 10
    want = [f"{sheet}: row {i + 2}: apex 1 equal to onset 1 (spNO.2/b@1, offset 4): middle frame 2 used",
            f"{sheet}: row {j + 2}: apex 3 before onset 5 (spNO.3/a@5, offset 8): middle frame 6 used",
            f"{sheet}: row {k + 2}: apex 14 after offset 12 (spNO.1/a@9, offset 12): middle frame 10 used"]
    assert sorted(n for n in s.notes if "middle frame" in n) == sorted(want)
    assert spw.main(["--catego", "CASME3", "--csv_path", sheet, "--root", casme3["root"], "--check"]) == 0
    out = capsys.readouterr().out
    assert all(w in out for w in want) and "CASME3: 18 samples, 3 subjects" in out


def test_casme3_bad_inputs_name_file_and_row(casme3, tmp_path, capsys):
    root, df = casme3["root"], casme3["df"]
    typo = df.copy()
    typo.loc[4, "emotion"] = "hapy"
    sheet = write_casme3(tmp_path / "typo.xlsx", typo)
    assert error(sheet, root, "CASME3") == (f"{sheet}: row 6: unknown emotion 'hapy' (CASME3 emotions: "
                                            "happy, disgust, fear, anger, sad, surprise, others)")
    sheet = write_casme3(tmp_path / "nocol.xlsx", df.drop(columns="emotion"))
    assert "missing column Estimated Emotion" in error(sheet, root, "CASME3")
    sheet = write_casme3(tmp_path / "dup.xlsx", pd.concat([df, df.iloc[[1]]]))
    assert error(sheet, root, "CASME3") == (f"{sheet}: row 23: duplicate sample spNO.1/a@5 "
                                            f"(first at {sheet}: row 3)")
    bad = df.copy()
    bad.loc[2, "Onset"] = "x"
    sheet = write_casme3(tmp_path / "onset.xlsx", bad)
    assert error(sheet, root, "CASME3") == f"{sheet}: row 4, column Onset: 'x' is not a frame number"
    # a missing frame: --check names it and the sheet row of its sample
    gone = tmp_path / "A"
    shutil.copytree(root, gone)
    r = df[(df.Subject == "spNO.2") & (df.Filename == "b")].iloc[1]   # others, frames 5..8
    os.remove(gone / "spNO.2" / "b" / "color" / f"{r.Apex}.jpg")
    argv = ["--catego", "CASME3", "--csv_path", casme3["sheet"], "--root", str(gone), "--check"]
    assert spw.main(argv) == 0   # others is not in the 3-class set
    assert "0 missing" in capsys.readouterr().out
    assert spw.main(argv + ["--num_classes", "7"]) == 1
    out = capsys.readouterr().out
    assert f"missing frame: {gone / 'spNO.2' / 'b' / 'color' / f'{r.Apex}.jpg'}  " \
           f"({casme3['sheet']}: row {r.name + 2})" in out
    assert "1 missing frames or folders, 1 of 21 samples affected" in out


def test_custom_csv_classes_frames_and_offsets(custom, tmp_path):
    s = dl.read_samples(custom["csv"], custom["root"], "CUSTOM")
    t = s.table
    assert s.classes == ["disgust", "happy", "surprise"]   # the CSV's emotions, sorted
    assert "classes from the emotions of the sheet, sorted: disgust, happy, surprise" in s.notes
    assert counts(s) == {"disgust": 3, "happy": 3, "surprise": 3} and set(t.face) == {"dlib"}
    assert t.onset_path[0] == os.path.join(custom["root"], "clips", "P1_happy", "frame_0012.png")
    assert all(os.path.isfile(p) for p in [*t.onset_path, *t.apex_path])
    sub = dl.read_samples(custom["csv"], custom["root"], "CUSTOM", classes=["surprise", "happy"])
    assert sub.classes == ["happy", "surprise"] and len(sub.table) == 6 and "dropped 3" in " ".join(sub.notes)
    assert ("classes from the emotions of the sheet, sorted: disgust, happy, surprise; "
            "--classes keeps happy, surprise" in sub.notes)
    msg = error(custom["csv"], custom["root"], "CUSTOM", classes=["happy", "angry"])
    assert msg == "--classes angry: no such emotion in the CSV (it has disgust, happy, surprise)"
    assert "--num_classes 5 does not fit CUSTOM" in error(custom["csv"], custom["root"], "CUSTOM", 5)
    # no offset column: the clip folder ends the clip; a blank apex or one past the clip -> middle frame
    df = custom["df"].copy()
    df["apex"] = df.apex.astype(object)
    df.loc[0, "apex"], df.loc[1, "apex"] = None, 40
    df.loc[2, "emotion"] = " Disgust "   # case and spaces do not make another class
    csv = tmp_path / "clips.csv"
    df.to_csv(csv, index=False)
    s = dl.read_samples(str(csv), custom["root"], "CUSTOM")
    assert s.classes == ["disgust", "happy", "surprise"] and s.table.apex[:2].tolist() == [13, 13]
    assert f"{csv}: row 2: apex missing (P1/clips/P1_happy@12, offset 15): middle frame 13 used" in s.notes
    assert (f"{csv}: row 3: apex 40 after offset 15 (P1/clips/P1_surprise@12, offset 15): "
            "middle frame 13 used" in s.notes)


def test_custom_bad_inputs_name_file_and_row(custom, tmp_path, capsys):
    df, root = custom["df"], custom["root"]
    csv = tmp_path / "noclip.csv"
    df.drop(columns="clip").to_csv(csv, index=False)
    assert error(str(csv), root, "CUSTOM") == f"{csv}: no header row with columns Subject and Filename"
    csv = tmp_path / "noapex.csv"
    df.drop(columns="apex").to_csv(csv, index=False)
    assert "missing column ApexFrame" in error(str(csv), root, "CUSTOM")
    bad = df.copy()
    bad.loc[3, "clip"] = "clips/nowhere"
    bad.loc[3, "apex"] = 12
    csv = tmp_path / "bad.csv"
    bad.to_csv(csv, index=False)
    assert error(str(csv), root, "CUSTOM") == (f"{csv}: row 5: apex 12 equal to onset 12 "
                                               "(P2/clips/nowhere@12) "
                                               "and no offset after the onset to take the middle frame from")
    # a missing frame is named like the clip's other frames, with its CSV row
    frames = tmp_path / "frames"
    shutil.copytree(root, frames)
    os.remove(frames / "clips" / "P3_surprise" / f"frame_{df.apex[7]:04d}.png")
    assert spw.main(["--catego", "CUSTOM", "--csv_path", custom["csv"], "--root", str(frames),
                     "--check"]) == 1
    out = capsys.readouterr().out
    assert f"missing frame: {frames / 'clips' / 'P3_surprise' / f'frame_{df.apex[7]:04d}.png'}  " \
           f"({custom['csv']}: row 9)" in out
    assert "1 missing frames or folders, 1 of 9 samples affected" in out


def test_list_frames_any_name_ending_in_digits(tmp_path):
    for name in ["img46.jpg", "frame_0047.png", "48.bmp", "a1b49.JPEG", "notes.txt", "thumbs.db"]:
        (tmp_path / name).write_bytes(b"")
    frames = datasets.list_frames(str(tmp_path), "CUSTOM", "x")
    assert {n: os.path.basename(p) for n, (p, _) in frames.items()} == {
        46: "img46.jpg", 47: "frame_0047.png", 48: "48.bmp", 49: "a1b49.JPEG"}


def test_composite_of_chosen_parts_and_lodo_splits(data, casme3):
    sheets = [data["sheet"], data["samm_sheet"], casme3["sheet"]]
    s = dl.read_samples(sheets, [data["casme"], data["samm"], casme3["root"]], "COMPOSITE",
                        parts=["CASME", "SAMM", "CASME3"])
    assert counts(s, "dataset") == {"CASME": 8, "SAMM": 9, "CASME3": 18}
    assert s.table.subject[s.table.dataset == "CASME3"].str.startswith("casme3_spNO.").all()
    assert "CASME3 disgust, fear, anger, sad" in datasets.describe(s)
    two = dl.read_samples(sheets[:2], [data["casme"], data["samm"]], "COMPOSITE", parts=["CASME", "SAMM"])
    assert counts(two, "dataset") == {"CASME": 8, "SAMM": 9}
    folds = list(dl.lodo_splits(two.table.dataset))
    assert [d for d, _, _ in folds] == ["CASME", "SAMM"]
    for d, tr, te in folds:
        assert set(two.table.dataset[te]) == {d} and d not in set(two.table.dataset[tr])
        assert len(tr) + len(te) == len(two.table)
    msg = error(sheets[:1], [data["casme"]], "COMPOSITE", parts=["CASME", "CUSTOM"])
    assert msg.startswith("--parts CASME CUSTOM: expected distinct datasets among CASME, SAMM, SMIC, CASME3")
    assert "--parts goes with --catego COMPOSITE" in error(
        data["sheet"], data["casme"], "CASME", parts=["CASME"])
    assert "takes 2 coding sheets (CASME, SAMM) and 2 dataset folders" in error(
        sheets, [data["casme"], data["samm"]], "COMPOSITE", parts=["CASME", "SAMM"])
    with pytest.raises(datasets.DataError, match="lodo needs two or more datasets"):
        list(dl.lodo_splits(["CASME"] * 3))


def test_readme_mmew_mapping_gives_a_custom_csv(custom, tmp_path):
    # MMEW's sheet and layout (clips under <emotion>/<Filename>/), mapped as the README shows
    rows = []
    for r in custom["df"].itertuples():
        emotion = r.emotion.capitalize()
        shutil.copytree(os.path.join(custom["root"], r.clip),
                        tmp_path / "mmew" / emotion / f"{r.subject}_{r.emotion}")
        rows.append(dict(Subject=r.subject, Filename=f"{r.subject}_{r.emotion}", OnsetFrame=r.onset,
                         ApexFrame=r.apex, OffsetFrame=r.onset + 3, **{"Estimated Emotion": emotion}))
    pd.DataFrame(rows).to_excel(tmp_path / "MMEW_Micro_Exp.xlsx", index=False)
    df = pd.read_excel(tmp_path / "MMEW_Micro_Exp.xlsx")   # the README's lines, paths aside
    pd.DataFrame({"subject": df["Subject"], "clip": df["Estimated Emotion"] + "/" + df["Filename"],
                  "onset": df["OnsetFrame"], "apex": df["ApexFrame"], "offset": df["OffsetFrame"],
                  "emotion": df["Estimated Emotion"]}).to_csv(tmp_path / "mmew.csv", index=False)
    s = dl.read_samples(str(tmp_path / "mmew.csv"), str(tmp_path / "mmew"), "CUSTOM")
    assert s.classes == ["disgust", "happy", "surprise"] and len(s.table) == 9
    assert all(os.path.isfile(p) for p in [*s.table.onset_path, *s.table.apex_path])


# ---------------------------------------------------------------------------------------------
# frame numbers, blank ids, and the frame that stands in for a bad apex

def test_a_frame_number_is_a_whole_number(custom, tmp_path):
    df = custom["df"].astype(object)
    for column, value in [("apex", "4.7"), ("apex", "1e3"), ("onset", "12.5"), ("apex", "inf"),
                          ("offset", "14.2")]:
        bad = df.assign(offset=15).astype(object)
        bad.loc[1, column] = value
        csv = tmp_path / "bad.csv"
        bad.to_csv(csv, index=False)
        assert error(str(csv), custom["root"], "CUSTOM") == (
            f"{csv}: row 3, column {column}: {value!r} is not a frame number (a whole number)")
    ok = df.assign(offset=15)
    ok["apex"] = [f"{a}.0" for a in ok.apex]   # what a numeric cell may read as
    ok.to_csv(tmp_path / "ok.csv", index=False)
    assert dl.read_samples(str(tmp_path / "ok.csv"), custom["root"], "CUSTOM").table.apex.tolist() == \
        df.apex.tolist()
    neg = df.copy()
    neg.loc[2, "onset"] = -3
    neg.to_csv(tmp_path / "neg.csv", index=False)
    assert error(str(tmp_path / "neg.csv"), custom["root"], "CUSTOM") == \
        f"{tmp_path / 'neg.csv'}: row 4, column onset: '-3' is not a frame number"


def test_blank_subject_or_clip_is_named(custom, tmp_path):
    for column in ("subject", "clip"):
        bad = custom["df"].astype(object)
        bad.loc[2, column] = " "
        csv = tmp_path / f"{column}.csv"
        bad.to_csv(csv, index=False)
        assert error(str(csv), custom["root"], "CUSTOM") == f"{csv}: row 4, column {column}: blank"


def test_a_missing_middle_frame_gives_way_to_the_nearest(custom, tmp_path):
    root = tmp_path / "frames"
    shutil.copytree(custom["root"], root)
    df = custom["df"].astype(object)
    df.loc[0, "apex"] = "/"   # P1_happy: frames 12..15, middle 13
    os.remove(root / "clips" / "P1_happy" / "frame_0013.png")
    csv = tmp_path / "clips.csv"
    df.to_csv(csv, index=False)
    s = dl.read_samples(str(csv), str(root), "CUSTOM")
    assert s.table.apex[0] == 14 and os.path.isfile(s.table.apex_path[0])
    assert (f"{csv}: row 2: apex '/' is not a number (P1/clips/P1_happy@12, offset 15): "
            "middle frame 13 missing, frame 14 used") in s.notes
