"""train.py on the other datasets' layouts built natively from the demo's faces (CAS(ME)^3, CUSTOM,
a composite and FLOWS) and the cross-dataset protocol (--protocol lodo)."""
import json
import os

import pandas as pd
import pytest
import torch

import builders
import dataloader as dl
import flowfiles
import runfolder
import save_preprocess_weight
import train
from test_dataloader import data, write_samm_sheet  # noqa: F401  (the natively built composite)
from test_train import dataset, run, tiny  # noqa: F401  (its fixtures and helpers)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    d = tmp_path_factory.mktemp("layouts")
    return dict(dir=d, c3_sheet=builders.build_casme3(str(d / "casme3"), subjects=2, frames=4),
                c3_root=str(d / "casme3"), csv=builders.build_custom(str(d / "custom"), subjects=2, frames=4),
                cu_root=str(d / "custom"))


def test_casme3_preprocess_and_loso(layouts, capsys):
    d, cache = layouts["dir"], str(layouts["dir"] / "cache3")
    data3 = ["--catego", "CASME3", "--csv_path", layouts["c3_sheet"], "--root", layouts["c3_root"]]
    assert save_preprocess_weight.main(data3 + ["--cache_dir", cache, "--workers", "2"]) == 0
    tag = builders.cache_folder(cache, "spNO.1").parent   # <cache>/<settings tag>
    made = sorted(os.path.relpath(os.path.join(r, f), tag) for r, _, fs in os.walk(cache) for f in fs)
    assert len(made) == 12 and made[:3] == ["spNO.1/a_1.npz", "spNO.1/a_5.npz", "spNO.1/a_9.npz"]
    out = d / "run3"
    assert train.main(tiny("--catego", "CASME3", "--path", layouts["c3_sheet"],
                           "--img_root", layouts["c3_root"],
                           "--cache_dir", cache, "--weight_save_path", str(out))) == 0
    p = pd.read_csv(out / "predictions.csv")
    assert len(p) == 12 and sorted(os.listdir(out / "folds")) == ["spNO.1.json", "spNO.2.json"]
    assert (not p.duplicated(["subject", "filename", "onset"]).any()
            and p.duplicated(["subject", "filename"]).any())
    assert set(p.label) <= {"negative", "positive", "surprise"} and (p.label == "negative").sum() == 8
    s = json.loads((out / "summary.json").read_text())
    assert s["folds"] == 2 and s["config"]["protocol"] == "loso" and s["config"]["catego"] == "CASME3"
    assert "LOSO over 2 subjects, 12 samples" in capsys.readouterr().out


def test_custom_trains_with_its_own_classes_and_predicts(layouts, capsys):
    import predict
    d = layouts["dir"]
    base = ["--catego", "CUSTOM", "--path", layouts["csv"], "--img_root", layouts["cu_root"],
            "--cache_dir", str(d / "cache_custom")]
    assert train.main(tiny(*base, "--weight_save_path", str(d / "custom"))) == 0
    p = pd.read_csv(d / "custom" / "predictions.csv")
    assert len(p) == 6 and set(p.label) == {"disgust", "happy", "surprise"} and (p.onset == 12).all()
    assert [c for c in p.columns if c.startswith("p_")] == ["p_disgust", "p_happy", "p_surprise"]
    assert ("classes from the emotions of the sheet, sorted: disgust, happy, surprise"
            in capsys.readouterr().out)
    # a subset of its classes: the caches are reused
    assert train.main(tiny(*base, "--classes", "surprise", "happy",
                           "--weight_save_path", str(d / "two"))) == 0
    s = json.loads((d / "two" / "summary.json").read_text())
    assert s["config"]["classes"] == ["happy", "surprise"] and s["samples"] == 4
    assert "caches: 4 valid" in capsys.readouterr().out
    # --final, then predict.py on one of its clips: the CSV's classes come back from final.pt
    assert train.main(tiny(*base, "--final", "--weight_save_path", str(d / "final"))) == 0
    row = dl.read_samples(layouts["csv"], layouts["cu_root"], "CUSTOM").table.iloc[0]
    out, extra = predict.predict(str(d / "final" / "final.pt"), onset=row.onset_path, apex=row.apex_path)
    assert (list(out["probabilities"]) == ["disgust", "happy", "surprise"]
            and out["prediction"] in extra["classes"])
    ckpt = torch.load(d / "final" / "final.pt", weights_only=True)
    assert (ckpt["catego"] == "CUSTOM" and "P1/clips/P1_happy@12" in ckpt["sample_ids"]
            and len(ckpt["sample_ids"]) == 6)
    assert (ckpt["recipe"], ckpt["batch_order"]) == ("keras", "subject")


@pytest.fixture(scope="module")
def composite(data, tmp_path_factory):
    """Subject 1 of each dataset of test_dataloader's composite (CASME II, SAMM, SMIC-HS trees):
    LODO holds out datasets, so one subject of each is enough."""
    import shutil
    d = tmp_path_factory.mktemp("lodo")
    casme_sheet = builders.subset_sheet(dict(sheet=data["sheet"]), ["01"], d / "casme.csv")
    rows = pd.read_excel(data["samm_sheet"], header=13, dtype=str)
    rows = rows[rows.Subject == "6"].astype(object).where(rows.notna(), None)
    samm_sheet = str(d / "SAMM_Micro_FACS_Codes_v2.xlsx")
    write_samm_sheet(samm_sheet, rows.values.tolist())
    shutil.copytree(os.path.join(data["smic"], "HS", "s1"), d / "HS" / "s1")
    return dict(dir=d, sheets=[casme_sheet, samm_sheet], roots=[data["casme"], data["samm"], str(d / "HS")])


def test_lodo_on_the_composite(composite, capsys):
    d = composite["dir"]
    out, cache = d / "lodo", str(d / "cache")
    argv = tiny("--catego", "COMPOSITE", "--path", *composite["sheets"], "--img_root", *composite["roots"],
                "--protocol", "lodo", "--cache_dir", cache, "--weight_save_path", str(out))
    assert train.main(argv + ["--subjects", "SAMM"]) == 0   # one held-out dataset, as a job array would
    assert os.listdir(out / "folds") == ["SAMM.json"] and not (out / "summary.json").exists()
    assert train.main(argv + ["--shard", "1/3"]) == 0        # CASME
    assert train.main(argv) == 0                              # SMIC; SAMM and CASME kept
    log = capsys.readouterr().out
    assert "fold 2/3 dataset SAMM: done earlier, kept" in log and "LODO over 3 datasets, 12 samples" in log
    assert sorted(os.listdir(out / "folds")) == ["CASME.json", "SAMM.json", "SMIC.json"]
    for name in ("CASME", "SAMM", "SMIC"):
        rows = json.loads((out / "folds" / f"{name}.json").read_text())["rows"]
        assert {r["dataset"] for r in rows} == {name}   # each fold tests on its held-out dataset only
    s = json.loads((out / "summary.json").read_text())
    assert s["folds"] == 3 and s["config"]["protocol"] == "lodo"
    assert {k: v["n"] for k, v in s["per_dataset"].items()} == {"CASME": 4, "SAMM": 4, "SMIC": 4}
    p = pd.read_csv(out / "predictions.csv")
    assert len(p) == 12 and {"dataset", "subject", "filename", "onset"} <= set(p.columns)
    for name, g in p.groupby("dataset"):
        assert s["per_dataset"][name]["accuracy"] == pytest.approx((g.label == g.prediction).mean())
    assert runfolder.summarize(str(out), log=lambda *_: None)["uf1"] == s["uf1"]
    # MEGC 2018's hold-out-database evaluation: CASME II and SAMM only, trained on one, tested on the other
    out2 = d / "megc2018"
    assert train.main(tiny("--catego", "COMPOSITE", "--parts", "CASME", "SAMM",
                           "--path", *composite["sheets"],
                           "--img_root", *composite["roots"][:2], "--protocol", "lodo", "--cache_dir", cache,
                           "--weight_save_path", str(out2))) == 0
    assert "caches: 8 valid" in capsys.readouterr().out   # the composite's caches serve any parts
    s2 = json.loads((out2 / "summary.json").read_text())
    assert (s2["folds"] == 2 and set(s2["per_dataset"]) == {"CASME", "SAMM"}
            and s2["config"]["parts"] == ["CASME", "SAMM"])


def test_lodo_needs_a_composite(dataset, tmp_path, capsys):
    assert run(dataset, tmp_path / "bad", "--protocol", "lodo") == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --protocol lodo holds out one dataset of a composite: "
                   "it needs --catego COMPOSITE (or FLOWS with several datasets), not CASME")


def test_flows_train_per_dataset_and_lodo_and_refuse_what_files_cannot_give(demo_export3, tmp_path, capsys):
    # the demo's exported STSTNet-style images, subjects 01 02 as CASME II and 03 04 as SAMM
    csv = pd.read_csv(os.path.join(demo_export3, flowfiles.EXPORT["images_csv"]), dtype=str)
    csv["dataset"] = csv["sub"].map({"casme2_01": "casme2", "casme2_02": "casme2",
                                     "casme2_03": "samm", "casme2_04": "samm"})
    csv.to_csv(tmp_path / "labels.csv", index=False)
    images = os.path.join(demo_export3, flowfiles.EXPORT["images"])
    argv = tiny("--catego", "FLOWS", "--path", str(tmp_path / "labels.csv"), "--img_root", images,
                "--cache_dir", str(tmp_path / "cache"), "--model", "SSSN")
    assert train.main(argv + ["--image_mode", "G", "--weight_save_path", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --image_mode G: no apex face image") \
        and err[0].endswith("this data gives S O")
    assert not (tmp_path / "cache").exists()   # refused before any preprocessing
    assert train.main(argv + ["--image_mode", "S", "--protocol", "lodo",
                              "--weight_save_path", str(tmp_path / "r")]) == 0
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["folds"] == 2 and {k: v["n"] for k, v in s["per_dataset"].items()} == {"casme2": 8, "samm": 8}
    assert s["config"]["classes"] == ["negative", "positive", "surprise"]
