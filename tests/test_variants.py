"""variants.py: the paper's grid of variants as ordinary train.py run folders, one table, and
finished variants reused when the command is repeated."""
import csv
import json
import os
import shutil

import pytest

import builders
import make_demo
import variants


def test_grid_is_the_papers():
    assert [v[0] for v in variants.grid()] == [
        "SSSN_F", "SSSN_G", "SSSN_S",
        "DSSN_FG_add", "DSSN_FG_mul", "DSSN_FG_cat", "DSSN_FS_add", "DSSN_FS_mul", "DSSN_FS_cat",
        "DSSN_GS_add", "DSSN_GS_mul", "DSSN_GS_cat"]
    # modes are put in the paper's order whatever order they are given in
    assert variants.grid(["DSSN"], ["S", "F"], ["cat"]) == [("DSSN_FS_cat", "DSSN", ["F", "S"], "cat")]
    # each network on the modes of its own size: STSTNet on its 28x28 image, the paper's on F G S
    assert variants.grid(["STSTNet", "SSSN"]) == [("STSTNet_O", "STSTNet", ["O"], None)] + [
        (f"SSSN_{m}", "SSSN", [m], None) for m in "FGS"]


@pytest.fixture(scope="module")
def grid_run(demo, once):
    """Three variants on subjects 01 and 02 of the shared demo (10 clips, caches built), trained
    once for all workers. Read it; a test that runs variants.py again runs it on own_copy."""
    def argv(d):
        return ["--path", str(d / "sheet.csv"), "--img_root", demo["root"], "--cache_dir", demo["cache"],
                "--epochs", "1", "--batch_size", "4", "--learning_rate", "1e-3", "--workers", "2",
                "--device", "cpu", "--out", str(d / "out")]
    narrow = ["--models", "SSSN", "DSSN", "--modes", "F", "G", "--fusions", "mul"]

    def build(d):
        builders.subset_sheet(demo, ["01", "02"], d / "sheet.csv")
        assert variants.main(argv(d) + narrow) == 0
    d = once("variants", build)
    return dict(argv=argv(d), narrow=narrow, out=d / "out")


def own_copy(grid_run, tmp_path):
    """grid_run's command line and folder, on a copy of the folder (mtimes kept)."""
    shutil.copytree(grid_run["out"], tmp_path / "out")
    return dict(grid_run, argv=grid_run["argv"][:-1] + [str(tmp_path / "out")], out=tmp_path / "out")


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_table_has_one_row_per_variant(grid_run):
    out = grid_run["out"]
    rows = read_csv(out / "table.csv")
    assert [r["variant"] for r in rows] == ["SSSN_F", "SSSN_G", "DSSN_FG_mul"]
    assert [(r["model"], r["modes"], r["fusion"]) for r in rows] == [
        ("SSSN", "F", ""), ("SSSN", "G", ""), ("DSSN", "FG", "mul")]
    for r in rows:
        s = json.loads((out / r["variant"] / "summary.json").read_text())
        for k in ("accuracy", "uf1", "uar", "author_f1"):
            assert float(r[k]) == pytest.approx(s[k], abs=1e-4)
        assert float(r["seconds"]) == pytest.approx(s["seconds"])
        ap = s["authors_protocol"]   # the authors' protocol beside the last epoch
        assert int(r["ap_epoch"]) == ap["epoch"]
        for k in ("accuracy", "uf1", "author_f1"):
            assert float(r[f"ap_{k}"]) == pytest.approx(ap[k], abs=1e-4)
        for k in ("accuracy", "uf1", "uar"):   # one seed: the 95 % CI over subjects beside each score
            assert ([float(r[f"{k}_ci_low"]), float(r[f"{k}_ci_high"])]
                    == pytest.approx(s["ci95"][k], abs=1e-4))
        assert r["uf1_sd"] == ""
        cfg = s["config"]   # each variant really ran with its own model and modes
        assert (cfg["model"], "".join(cfg["image_mode"])) == (r["model"], r["modes"])
        assert cfg["epochs"] == 1 and cfg["batch_size"] == 4   # the dataset flags were passed through
        if r["model"] == "DSSN":
            assert cfg["combination_mode"] == r["fusion"]
    md = (out / "table.md").read_text()
    assert ("| variant | model | modes | fusion | accuracy | UF1 | UAR | authors' F1 | AP epoch "
            "| AP accuracy | AP UF1 "
            "| AP authors' F1 | seconds |") in md
    assert "| DSSN_FG_mul | DSSN | FG | mul |" in md and "| SSSN_G | SSSN | G | - |" in md
    uf1 = [r for r in rows if r["variant"] == "SSSN_G"][0]
    assert (f"| SSSN_G | SSSN | G | - | {float(uf1['accuracy']):.4f} [{float(uf1['accuracy_ci_low']):.4f}, "
            f"{float(uf1['accuracy_ci_high']):.4f}] |") in md and "95 % CI of a bootstrap over subjects" in md
    assert "Not finished" not in md and "Warning" not in md
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]   # written atomically


def test_rerun_trains_nothing(grid_run, tmp_path, capsys):
    grid_run = own_copy(grid_run, tmp_path)
    out = grid_run["out"]
    folds = sorted(out.glob("*/folds/*.json"))
    assert len(folds) == 6   # 3 variants x 2 subjects
    mtimes = [f.stat().st_mtime_ns for f in folds]
    capsys.readouterr()
    assert variants.main(grid_run["argv"] + grid_run["narrow"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("done earlier, kept") == 6
    assert [f.stat().st_mtime_ns for f in sorted(out.glob("*/folds/*.json"))] == mtimes
    assert "| DSSN_FG_mul | DSSN | FG | mul |" in printed   # the table is printed at the end


def test_only_runs_just_those_and_the_table_has_everything(grid_run, tmp_path, capsys):
    grid_run = own_copy(grid_run, tmp_path)
    out = grid_run["out"]
    assert variants.main(grid_run["argv"] + ["--only", "SSSN_S"]) == 0
    assert ([r["variant"] for r in read_csv(out / "table.csv")]
            == ["SSSN_F", "SSSN_G", "SSSN_S", "DSSN_FG_mul"])
    assert not (out / "DSSN_FS_mul").exists()
    capsys.readouterr()
    assert variants.main(grid_run["argv"] + ["--only", "DSSN_XY_mul"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --only DSSN_XY_mul: not a variant") and "\n" not in err


def test_changed_settings_are_refused_not_mixed(grid_run, tmp_path, capsys):
    grid_run = own_copy(grid_run, tmp_path)
    argv = [a if a != "1" else "2" for a in grid_run["argv"]]   # --epochs 2
    assert variants.main(argv + ["--only", "SSSN_F"]) == 2
    err = capsys.readouterr().err
    assert "epochs" in err and "SSSN_F stopped" in err
    # nothing was retrained or overwritten
    assert json.loads((grid_run["out"] / "SSSN_F" / "config.json").read_text())["epochs"] == 1


def test_a_partial_variant_is_marked_in_the_table(grid_run, tmp_path):
    import train
    grid_run = own_copy(grid_run, tmp_path)
    out = grid_run["out"]
    for f in ("folds/02.json", "summary.json"):
        os.remove(out / "SSSN_G" / f)
    assert train.main(["--summarize", str(out / "SSSN_G"), "--partial"]) == 0
    md, rows = variants.write_table(str(out), variants.grid(), [])
    partial = {r["variant"]: r["partial"] for r in read_csv(out / "table.csv")}
    assert partial == {"SSSN_F": "", "SSSN_G": "1 of 2 folds, missing 02", "DSSN_FG_mul": ""}
    assert "| SSSN_G (PARTIAL) | SSSN | G | - |" in md
    assert "**PARTIAL**: SSSN_G (1 of 2 folds, missing 02): summarized from the folds there are" in md


def test_multi_seed_variants_show_mean_and_sd(tmp_path):
    cfg = dict(demo=True, protocol="loso", recipe="keras", epochs=1, batch_size=4, learning_rate=1e-3,
               seeds=[0, 1], pretrained="none",
               classes=make_demo.CLASSES, model="DSSN", image_mode=["F", "G"], combination_mode="mul")
    keys = ("accuracy", "uf1", "uar", "weighted_f1", "author_f1")
    ap = lambda v: dict(zip(("epoch", "accuracy", "uf1", "uar", "author_f1"), v))
    (tmp_path / "DSSN_FG_mul").mkdir()
    (tmp_path / "DSSN_FG_mul" / "summary.json").write_text(json.dumps(dict(   # as train.py --seeds writes it
        seeds=[0, 1], mean=dict(zip(keys, (0.5, 0.4, 0.45, 0.41, 0.42))),
        sd=dict(zip(keys, (0.01, 0.02, 0.03, 0.04, 0.05))),
        authors_protocol=dict(mean=ap((1.5, 0.6, 0.55, 0.6, 0.57)), sd=ap((0.7, 0.1, 0.11, 0.12, 0.13))),
        seconds=3.0, folds=3, partial=False, samples=15, config=cfg)))
    md, rows = variants.write_table(str(tmp_path), variants.grid(), [])
    assert ("| DSSN_FG_mul | DSSN | FG | mul | 0.5000 +- 0.0100 | 0.4000 +- 0.0200 | 0.4500 +- 0.0300 | "
            "0.4200 +- 0.0500 | 1.5 | 0.6000 +- 0.1000 | 0.5500 +- 0.1100 | 0.5700 +- 0.1300 | 3.0 |") in md
    assert "seeds 0 1" in md and "sample sd over the seeds" in md
    r = read_csv(tmp_path / "table.csv")[0]
    assert ((float(r["uf1"]), float(r["uf1_sd"]), float(r["ap_author_f1_sd"]), r["uf1_ci_low"])
            == (0.4, 0.02, 0.13, ""))


def test_train_flags_pass_through_to_train():
    import train
    own, rest, _ = variants.split_argv([
        "--catego", "COMPOSITE", "--models", "DSSN", "--parts", "CASME", "SAMM", "--path", "c.xlsx", "s.xlsx",
        "--img_root", "C", "S", "--protocol", "lodo", "--classes", "negative", "positive",
        "--num_classes", "3",
        "--recipe", "pytorch", "--seeds", "0", "1", "2", "--out", "o"])
    assert own.models == ["DSSN"] and own.out == "o"
    a = train.parser().parse_args(variants.train_argv(rest, "DSSN", ["F", "G"], "mul", "run"))
    assert ((a.catego, a.parts, a.path, a.img_root)
            == ("COMPOSITE", ["CASME", "SAMM"], ["c.xlsx", "s.xlsx"], ["C", "S"]))
    assert (a.protocol, a.classes, a.num_classes, a.recipe, a.seeds) == ("lodo", ["negative", "positive"], 3,
                                                                          "pytorch", [0, 1, 2])
    assert (a.model, a.image_mode, a.combination_mode, a.weight_save_path) == ("DSSN", ["F", "G"], "mul",
                                                                                "run")
    _, rest, _ = variants.split_argv(["--catego", "CUSTOM", "--path", "clips.csv", "--img_root", "R"])
    a = train.parser().parse_args(variants.train_argv(rest, "SSSN", ["G"], None, "run"))
    assert ((a.catego, a.path, a.img_root, a.protocol, a.classes)
            == ("CUSTOM", ["clips.csv"], ["R"], "loso", None))


def test_bad_train_flags_and_the_variants_own_are_refused(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)   # nothing may be built or trained: runs/ and demo/ would land here
    # train.py's own checks, as train.py makes them
    with pytest.raises(SystemExit) as e:
        variants.split_argv(["--epochs", "0"])
    assert e.value.code == 2 and "argument --epochs: must be 1 or more, got 0" in capsys.readouterr().err
    # what variants.py sets for each variant is not taken from the command line
    for flag in (["--model", "SSSN"], ["--image_mode", "G"], ["--weight_save_path", "x"], ["--final"],
                 ["--summarize", "x"]):
        assert variants.main(flag) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        assert err.startswith(f"error: {flag[0]} cannot be given to variants.py"), err
    assert os.listdir(tmp_path) == []
