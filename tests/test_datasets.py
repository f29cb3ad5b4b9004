"""datasets.py: the layouts and sheets of CAS(ME)^3 Part A and CUSTOM (any dataset from a CSV),
built from the demo's faces: class sets, sheet slips, frame numbers, blank ids, the frame that
stands in for a bad apex, and their bad inputs in one line."""
import os
import shutil

import pandas as pd
import pytest

import builders
import caches
import dataloader as dl
import datasets
import save_preprocess_weight as spw
from test_dataloader import counts, data, error  # noqa: F401  (its fixture and helpers)


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
