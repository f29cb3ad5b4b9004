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
