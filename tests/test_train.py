"""End-to-end: a CASME II-layout folder built from a real face photo -> save_preprocess_weight.py
-> train.py, and what a run folder promises (resume, shards, refusal of other settings)."""
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score

import builders
import compare
import dataloader as dl
import make_demo
import recipes
import runfolder
import save_preprocess_weight
import train
from test_metrics import assert_ci_is_the_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dataset(demo, once):
    """Subjects 01 and 02 of the shared demo (10 clips, the demo's caches): what a run folder
    promises shows on two folds, at a sixth of the training of all four subjects. One sheet for
    all workers, since a run folder records its sheet's path. Read it, never edit it."""
    d = once("two", lambda d: builders.subset_sheet(demo, ["01", "02"], d / "sheet.csv"))
    return dict(demo, sheet=str(d / "sheet.csv"))


def run(dataset, out, *extra, epochs=1):
    # --device cpu: the tests compare runs bit for bit, which only CPU runs promise (tests/test_cuda.py
    # has the GPU's)
    argv = ["--path", dataset["sheet"], "--img_root", dataset["root"], "--cache_dir", dataset["cache"],
            "--weight_save_path", str(out), "--epochs", str(epochs), "--batch_size", "4",
            "--learning_rate", "1e-3", "--device", "cpu", *extra]
    return train.main(argv)


def tiny(*extra, epochs=1):
    """train.py's flags for a tiny run of any dataset (test_train_datasets.py)."""
    return [*extra, "--epochs", str(epochs), "--batch_size", "4", "--learning_rate", "1e-3", "--workers", "2",
            "--device", "cpu"]


def train_cmd(dataset, out):
    """train.py as a command line, with the same flags as run()."""
    return [sys.executable, "train.py", "--path", dataset["sheet"], "--img_root", dataset["root"],
            "--cache_dir", dataset["cache"], "--weight_save_path", str(out), "--epochs", "1",
            "--batch_size", "4", "--learning_rate", "1e-3", "--device", "cpu"]


@pytest.fixture(scope="module")
def whole(dataset, once):
    """One uninterrupted run of run()'s settings: what the interrupted, sharded and parallel runs
    must give. Read it, never write into it."""
    def build(d):
        assert run(dataset, d / "run") == 0
    return once("whole", build) / "run"


def test_cpu_tests_train_on_the_cpu_where_cuda_is_available(dataset, tmp_path, monkeypatch):
    from test_flags import fake_gpus
    assert not torch.cuda.is_available()   # conftest's cpu_only, in every test not marked cuda
    fake_gpus(monkeypatch, (9, 0))         # what torch answers on a machine with an H100
    seen = []
    monkeypatch.setattr(train, "main_run", lambda args: seen.append(args.device) or 0)
    argv = ["--path", dataset["sheet"], "--img_root", dataset["root"], "--cache_dir", dataset["cache"]]
    assert train.main(argv) == 0 and seen == ["cuda"]   # a script left to --device auto takes the GPU ...
    assert run(dataset, tmp_path / "run") == 0 and seen[1:] == ["cpu"]   # ... the tests' runs do not
    for cmd in (train_cmd(dataset, tmp_path / "run"), tiny()):   # nor their subprocesses and other layouts
        assert cmd[cmd.index("--device") + 1] == "cpu"


def test_cuda_runs_record_tf32_and_determinism_cpu_runs_do_not(dataset, monkeypatch):
    from test_flags import fake_gpus
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)   # --deterministic sets it
    argv = ["--path", dataset["sheet"], "--img_root", dataset["root"], "--cache_dir", dataset["cache"]]
    cpu = train.read_data(train.resolve(train.parser().parse_args(argv + ["--device", "cpu"])))[1]
    assert "tf32" not in cpu and "deterministic" not in cpu   # neither changes a CPU run
    fake_gpus(monkeypatch, (9, 0))
    for extra, want in (([], (False, False)), (["--tf32", "--deterministic"], (True, True))):
        args = train.resolve(train.parser().parse_args(argv + extra))
        config = train.read_data(args)[1]
        assert config["device_type"] == "cuda" and (config["tf32"], config["deterministic"]) == want
        assert config["amp"] == "bf16"   # --amp auto on a GPU with native bf16


def test_a_folder_with_nothing_trained_takes_new_settings(dataset, tmp_path, capsys, monkeypatch):
    # A run that failed before its first fold (here at its first backward, as a dtype error would)
    # left config.json behind: the retry with other flags uses the folder.
    out = tmp_path / "run"

    def crash(*a, **k):
        raise RuntimeError("Input type (float) and weight type (c10::BFloat16) should be the same")
    with monkeypatch.context() as m:
        m.setattr(train, "train_fold", crash)
        with pytest.raises(RuntimeError):
            run(dataset, out, "--subjects", "01", "--recipe", "pytorch")
    assert json.loads((out / "config.json").read_text())["recipe"] == "pytorch" \
        and not os.listdir(out / "folds")
    capsys.readouterr()
    assert run(dataset, out, "--subjects", "01", "--save_weights") == 0
    assert (f"{out}: nothing trained in it yet, so it is set up again with this run's settings (it was made "
            "with recipe='pytorch')") in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["recipe"] == "keras"
    # the fold's weights load with torch's defaults on a machine without a GPU: CPU tensors
    state = torch.load(out / "folds" / "01.pt", weights_only=True)
    assert state.keys() == train.build_model("DSSN", 5).state_dict().keys()
    assert all(v.device.type == "cpu" for v in state.values())
    # once a fold is in it, other settings are refused as before
    assert run(dataset, out, "--subjects", "02", "--recipe", "pytorch") == 2
    assert "was made with recipe='keras'" in capsys.readouterr().err
    # another process that sets the folder up again while this one trains its first fold: this
    # fold is not written into a folder of other settings
    race = tmp_path / "race"

    def rival(streams, y, train_idx, test_idx, args, *a, **k):
        config = json.loads((race / "config.json").read_text())
        (race / "config.json").write_text(json.dumps(config | {"epochs": 9}))
        return np.full((len(test_idx), 5), 0.2), [1.0], None
    with monkeypatch.context() as m:
        m.setattr(train, "train_fold", rival)
        assert run(dataset, race, "--subjects", "01") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {race}/config.json was replaced by another run's settings while this one "
                   "trained: its result is not written; use another --weight_save_path, or --new")
    assert not os.listdir(race / "folds")


def test_caches_are_valid_and_skipped_on_rerun(demo, capsys):
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(demo["cache"]) for f in fs)
    assert len(files) == 20 and all(f.endswith(".npz") for f in files)   # no temp files left
    mtimes = [os.path.getmtime(f) for f in files]
    assert save_preprocess_weight.main(["--csv_path", demo["sheet"], "--root", demo["root"],
                                        "--catego", "CASME", "--cache_dir", demo["cache"]]) == 0
    assert "20 valid" in capsys.readouterr().out
    assert mtimes == [os.path.getmtime(f) for f in files]


def test_summary_agrees_with_predictions(whole):
    out = whole
    for f in ["summary.json", "predictions.csv", "confusion_matrix.png", "train.log", "config.json"]:
        assert (out / f).is_file(), f
    s = json.loads((out / "summary.json").read_text())
    p = pd.read_csv(out / "predictions.csv")
    assert len(p) == 10 and p.subject.nunique() == 2 and s["folds"] == 2
    assert s["accuracy"] == pytest.approx(accuracy_score(p.label, p.prediction))
    assert s["uf1"] == pytest.approx(f1_score(p.label, p.prediction, average="macro",
                                              labels=make_demo.CLASSES,
                                              zero_division=0))
    assert s["uar"] == pytest.approx(recall_score(p.label, p.prediction, average="macro",
                                                  labels=make_demo.CLASSES, zero_division=0))
    assert s["per_subject"]["01"]["n"] == 5
    assert s["config"]["model"] == "DSSN" and s["config"]["combination_mode"] == "mul"
    probs = p[[f"p_{c}" for c in make_demo.CLASSES]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert (np.array(make_demo.CLASSES)[probs.argmax(1)] == p.prediction).all()


def test_demo_learns_and_shuffled_labels_fall_to_chance(demo, tmp_path):
    # The flow stream alone (SSSN F, half of DSSN's work) learns the 4-subject demo's five movements
    # in 5 epochs with the default recipe, while labels permuted within each subject stay near
    # chance. (4 epochs give UF1 0.893, DSSN needs 5 too: docs/demo.md has the runs.)
    flow = ["--model", "SSSN", "--image_mode", "F"]
    assert run(demo, tmp_path / "real", *flow, epochs=5) == 0   # all 4 subjects: 15 clips to learn from
    assert run(demo, tmp_path / "shuffled", *flow, "--shuffle_labels", epochs=5) == 0
    real = json.loads((tmp_path / "real" / "summary.json").read_text())
    shuffled = json.loads((tmp_path / "shuffled" / "summary.json").read_text())
    assert real["uf1"] >= 0.9, real["uf1"]
    assert shuffled["uf1"] <= 0.45, shuffled["uf1"]   # chance is 0.2 for 5 balanced classes
    # the intervals over subjects, against a plain bootstrap loop over predictions.csv
    for name, s in (("real", real), ("shuffled", shuffled)):
        assert_ci_is_the_loop(s, tmp_path / name / "predictions.csv")
    # paired tests tell the run from its control (20 samples of 4 subjects are enough) ...
    real_dir, shuffled_dir = str(tmp_path / "real"), str(tmp_path / "shuffled")
    assert compare.main([real_dir, shuffled_dir, "--json", str(tmp_path / "c.json")]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    for k in ("accuracy", "uf1", "uar"):
        assert c["metrics"][k]["difference"] == pytest.approx(shuffled[k] - real[k])
        assert c["metrics"][k]["p_value"] < 0.01 and c["metrics"][k]["ci95"][1] < 0
    assert c["mcnemar"]["p_value"] < 0.01 and "shuffle_labels" in c["labels"]
    # ... and find a run no different from itself
    assert compare.main([real_dir, real_dir, "--json", str(tmp_path / "same.json")]) == 0
    same = json.loads((tmp_path / "same.json").read_text())
    assert all(m["difference"] == 0 and m["p_value"] == 1 for m in same["metrics"].values())
    assert same["mcnemar"]["p_value"] == 1


def test_seeds_into_one_folder_mean_and_sd_over_their_summaries(dataset, tmp_path, capsys):
    out = tmp_path / "seeds"   # two seeds (an sd needs no more), one epoch a fold
    assert run(dataset, out, "--seeds", "0", "1") == 0
    printed = capsys.readouterr().out
    own = [json.loads((out / f"seed{s}" / "summary.json").read_text()) for s in (0, 1)]
    assert [m["config"]["seed"] for m in own] == [0, 1]
    top = json.loads((out / "summary.json").read_text())
    assert top["seeds"] == [0, 1] and top["per_seed"]["1"]["uf1"] == own[1]["uf1"]
    for k in ("accuracy", "uf1", "uar", "weighted_f1", "author_f1"):
        assert top["mean"][k] == pytest.approx(np.mean([m[k] for m in own]))
        assert top["sd"][k] == pytest.approx(np.std([m[k] for m in own], ddof=1))
    for k in ("accuracy", "uf1", "uar", "author_f1"):
        ap = [m["authors_protocol"][k] for m in own]
        assert top["authors_protocol"]["mean"][k] == pytest.approx(np.mean(ap))
        assert top["authors_protocol"]["sd"][k] == pytest.approx(np.std(ap, ddof=1))
    assert (out / "learning_curves.png").is_file() and "mean +- sd" in printed
    assert "2 seeds (0 1), each 2 folds over 10 samples" in printed
    # a seed's folder is what --seed N gives (one fold is enough to show it)
    assert run(dataset, tmp_path / "one", "--seed", "1", "--subjects", "02") == 0
    fold = lambda r: {k: v for k, v in json.loads((r / "folds" / "02.json").read_text()).items()
                      if k != "seconds"}
    assert fold(out / "seed1") == fold(tmp_path / "one")
    # rerunning trains nothing; --summarize on the multi-seed folder rewrites the same top summary
    assert run(dataset, out, "--seeds", "0", "1") == 0
    assert capsys.readouterr().out.count("done earlier, kept") == 4
    os.remove(out / "summary.json")
    assert train.main(["--summarize", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text()) == top


def test_other_demo_dir_caches_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for d in ("demo", "demo2", "demo3"):
        os.mkdir(d)
        (tmp_path / d / make_demo.SHEET).write_text("")   # resolve only looks for the sheet
    resolve = lambda *a: train.resolve(train.parser().parse_args(["--device", "cpu", *a])).cache_dir
    assert resolve() == resolve("--demo_dir", "./demo") == os.path.join("cache", "demo")
    other = resolve("--demo_dir", "demo2")
    assert other.startswith(os.path.join("cache", "demo-")) and other != resolve("--demo_dir", "demo3")


@pytest.mark.parametrize("extra, message", [
    (["--model", "DSSN", "--image_mode", "G"], "DSSN takes 2 or more streams"),
    (["--model", "SSSN", "--image_mode", "F", "G"], "SSSN takes 1 stream,"),
    (["--model", "SSSN", "--combination_mode", "add"], "SSSN fuses no streams"),
    (["--image_mode", "F", "X"], "--image_mode 'X' unknown"),
    (["--num_classes", "4"], "--num_classes 4 does not fit CASME"),
    (["--model", "STSTNet", "--image_mode", "S"],
     "--image_mode S: STSTNet takes 28x28 streams (O); S is 227x227"),
    (["--model", "STSTNet", "--pretrained", "partial.pt"],
     "--pretrained: STSTNet has no AlexNet conv1/conv2"),
    (["--model", "DSSN", "--image_mode", "F", "O"], "--image_mode O: DSSN takes 227x227 streams (F S G)"),
    (["--subjects", "99"], "--subjects 99: not in the data"),
    (["--recipe", "pytorch", "--batch_order", "class"],
     "--batch_order class: --recipe pytorch shuffles the batches every epoch"),
])
def test_bad_flags_one_line(dataset, tmp_path, capsys, extra, message):
    assert run(dataset, tmp_path / "bad", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


def test_ststnet_trains_with_its_published_settings(dataset, tmp_path):
    # a network's own training settings come from its declaration (STSTNet's main.py: Adam lr 5e-5,
    # batch 256, 800 epochs, recipe plain); given flags and the demo's settings take precedence
    a = train.resolve(train.parser().parse_args(["--device", "cpu", "--catego", "FLOWS", "--img_root", "x",
                                                 "--model", "STSTNet"]))
    assert (a.batch_size, a.learning_rate, a.epochs, a.recipe, a.image_mode, a.batch_order) \
        == (256, 5e-5, 800, "plain", ["O"], "class")
    dssn = train.resolve(train.parser().parse_args(["--device", "cpu", "--catego", "FLOWS", "--img_root", "x",
                                                    "--model", "DSSN"]))
    assert (dssn.recipe, dssn.batch_order) == ("keras", "subject")
    out = tmp_path / "stst"
    assert run(dataset, out, "--model", "STSTNet", "--subjects", "01") == 0
    cfg = runfolder.read_config(str(out))
    assert (cfg["model"], cfg["image_mode"], cfg["recipe"], cfg["batch_order"]) == ("STSTNet", ["O"], "plain",
                                                                                     "class")
    assert "STSTNet O, 2,485 parameters" in (out / "train.log").read_text()


def test_batch_order_class_batches_class_by_class(dataset, tmp_path, monkeypatch):
    # STSTNet's main.py batches its label folders one after another, unshuffled
    seen, real = [], train.train_fold
    def spy(streams, y, train_idx, *a, **k):
        seen.append(y[torch.as_tensor(train_idx)].tolist())
        return real(streams, y, train_idx, *a, **k)
    monkeypatch.setattr(train, "train_fold", spy)
    out = tmp_path / "by_class"
    assert run(dataset, out, "--model", "STSTNet", "--subjects", "01") == 0   # its recipe's default
    assert seen[0] == sorted(seen[0]) and len(set(seen[0])) == 5
    assert runfolder.read_config(str(out))["batch_order"] == "class"
    assert "batch 4 in class order" in (out / "train.log").read_text()
    seen.clear()
    assert run(dataset, tmp_path / "by_sheet", "--model", "STSTNet", "--batch_order", "sheet",
               "--subjects", "01") == 0
    assert seen[0] != sorted(seen[0])   # the demo's sheet lists each subject's five classes in turn


def test_three_stream_dssn_and_its_fusion_in_the_run_identity(dataset, tmp_path, capsys):
    # DSSN takes one trunk per stream given; the fusion of any network that has one is part of
    # the run folder's identity, so a run is never resumed under another fusion
    out = tmp_path / "three"
    assert run(dataset, out, "--model", "DSSN", "--image_mode", "F", "G", "S", "--subjects", "01") == 0
    cfg = runfolder.read_config(str(out))
    assert cfg["image_mode"] == ["F", "G", "S"] and cfg["combination_mode"] == "mul"
    assert "DSSN F G S fusion mul, 1,315,205 parameters" in (out / "train.log").read_text()
    capsys.readouterr()
    assert run(dataset, out, "--model", "DSSN", "--image_mode", "F", "G", "S", "--combination_mode", "add",
               "--subjects", "02") == 2
    assert "made with combination_mode='mul', this run has 'add'" in capsys.readouterr().err
    # a network given what it cannot take is refused before a run folder is made
    assert run(dataset, tmp_path / "never", "--model", "SSSN", "--image_mode", "F", "G") == 2
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("argv, message", [
    (["--summarize", "RUN", "--epochs", "3"], "--epochs cannot apply to --summarize, which only summarizes "
                                             "the fold files of RUN"),
    (["--summarize", "RUN", "--path", "sheet.csv"], "--path cannot apply to --summarize"),
    (["--final", "--subjects", "01"], "--subjects cannot apply to --final, which trains one model on every "
                                      "sample (no folds)"),
    (["--final", "--seeds", "0", "1"], "--seeds cannot apply to --final"),
    (["--final", "--protocol", "lodo"], "--protocol cannot apply to --final"),
])
def test_modes_refuse_the_flags_they_would_ignore(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)   # where the demo would be built
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {message}"), err
    assert os.listdir(tmp_path) == []   # refused before any work


def test_bad_pretrained_file_one_line(dataset, tmp_path, capsys):
    import torch
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, tmp_path / "tv.pth")
    assert run(dataset, tmp_path / "bad", "--pretrained", str(tmp_path / "tv.pth")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "(96, 3, 11, 11)" in err and "(64, 3, 11, 11)" in err


def test_per_epoch_scores_authors_protocol_and_keras_weights(dataset, tmp_path, capsys):
    import hashlib
    from test_network import alexnet_convs, write_keras1_h5
    h5 = tmp_path / "alexnet_weights.h5"
    write_keras1_h5(h5, {k: (w * 0.01, b * 0.01) for k, (w, b) in alexnet_convs().items()})
    out = tmp_path / "run"   # two folds of 5 clips: what is scored, not how well
    assert run(dataset, out, "--pretrained", str(h5), epochs=3) == 0
    log = (out / "train.log").read_text()
    assert "Keras 1 HDF5" in log and hashlib.sha256(h5.read_bytes()).hexdigest() in log
    s = json.loads((out / "summary.json").read_text())
    curves = s["per_epoch"]
    assert [e["epoch"] for e in curves] == [1, 2, 3]
    for k in ("accuracy", "uf1", "uar", "author_f1"):   # the last epoch is the headline
        assert curves[-1][k] == s[k]
    folds = [json.loads((out / "folds" / f).read_text()) for f in sorted(os.listdir(out / "folds"))]
    for fold in folds:
        assert len(fold["epoch_predictions"]) == 3 and all(len(p) == 5 for p in fold["epoch_predictions"])
        assert fold["epoch_predictions"][-1] == [r["prediction"] for r in fold["rows"]]
    labels = [r["label"] for f in folds for r in f["rows"]]
    for e, c in enumerate(curves):   # pooled over all folds, like the headline
        pred = [p for f in folds for p in f["epoch_predictions"][e]]
        assert c["accuracy"] == pytest.approx(accuracy_score(labels, pred))
        assert c["uf1"] == pytest.approx(f1_score(labels, pred, average="macro", labels=range(5),
                                                  zero_division=0))
        assert c["train_loss"] == pytest.approx(np.mean([f["train_loss"][e] for f in folds]))
    a = s["authors_protocol"]
    best = max(c["author_f1"] for c in curves)
    assert a["epoch"] == min(c["epoch"] for c in curves if c["author_f1"] == best)   # earliest of ties
    assert a["author_f1"] == best and a["uf1"] == curves[a["epoch"] - 1]["uf1"] and "TEST" in a["note"]
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"authors' protocol, epoch {a['epoch']} PICKED ON TEST DATA" in capsys.readouterr().out
    # --summarize rebuilds the same curves from the fold files
    os.remove(out / "summary.json")
    assert train.main(["--summarize", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text()) == s


def test_per_epoch_scoring_leaves_training_unchanged():
    import argparse
    import torch
    g = torch.Generator().manual_seed(0)
    streams = [torch.randint(0, 256, (14, 227, 227, 3), dtype=torch.uint8, generator=g) for _ in range(2)]
    y = torch.randint(0, 5, (14,), generator=g)
    args = argparse.Namespace(model="DSSN", num_classes=5, combination_mode="mul", learning_rate=1e-3,
                              batch_size=4, epochs=2, device="cpu", amp="none")
    train_idx, test_idx = np.arange(10), np.arange(10, 14)
    p0, l0, _ = train.train_fold(streams, y, train_idx, test_idx, args, seed=3)
    epochs = []
    p1, l1, _ = train.train_fold(streams, y, train_idx, test_idx, args, seed=3, epoch_probs=epochs)
    assert np.array_equal(p0, p1) and l0 == l1   # bit-identical
    assert len(epochs) == 2 and np.array_equal(epochs[-1], p1) and not np.array_equal(epochs[0], p1)


def test_bf16_where_it_is_not_native_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    # what an AVX2 CPU answers (this project's machine); patched so the test means the same anywhere
    monkeypatch.setattr(train, "native_bf16", lambda device: (False, "this CPU (AVX2) has no native bf16"))
    assert train.main(["--amp", "bf16", "--device", "cpu", "--demo_dir", str(tmp_path / "demo"),
                       "--weight_save_path", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--amp bf16" in err and "--amp none" in err, err
    assert not (tmp_path / "demo").exists() and not (tmp_path / "run").exists()   # nothing built or read


def test_native_bf16_of_a_gpu_is_that_gpus(monkeypatch):
    from test_flags import fake_gpus
    fake_gpus(monkeypatch, (7, 5), (9, 0))   # a T4 as cuda:0 (the current device), an H100 as cuda:1
    assert train.native_bf16("cuda:1") == (True, "") and not train.native_bf16("cuda:0")[0]
    assert not train.native_bf16("cuda")[0]
    assert train.resolve_amp("cuda:1", "auto") == "bf16" and train.resolve_amp("cuda:0", "auto") == "none"


def test_native_bf16_answers_for_this_machine(cpu_native_bf16):
    ok, why = train.native_bf16("cpu")
    assert ok == cpu_native_bf16, (ok, why)   # what the CPU's feature flags say
    if ok:
        assert why == ""
    else:   # names the CPU's instruction set, as the refusal of --amp bf16 shows it
        assert "bf16" in why and torch.backends.cpu.get_cpu_capability() in why, why


# ---------------------------------------------------------------------------------------------
# --recipe keras through train.py (recipes.py's parts: tests/test_recipes.py)

def test_keras_recipe_batches_are_the_authors_order_every_epoch(demo, tmp_path, monkeypatch):
    seen = []
    loss = recipes.keras_crossentropy
    monkeypatch.setattr(recipes, "keras_crossentropy", lambda z, t: seen.append(t.tolist()) or loss(z, t))
    assert run(demo, tmp_path / "run", "--subjects", "01", epochs=2) == 0
    t = dl.read_samples(demo["sheet"], demo["root"], "CASME").table
    order = t.label[t.subject != "01"].tolist()   # subjects 02, 03, 04, each in sheet order
    assert [len(b) for b in seen] == [4, 4, 4, 3] * 2   # consecutive batches, the last one shorter
    assert sum(seen, []) == order * 2


def test_keras_recipe_carries_adams_counter_across_folds(dataset, whole, tmp_path, capsys):
    alone, port = tmp_path / "alone", tmp_path / "port"
    folds = [json.loads((whole / "folds" / f"{s}.json").read_text()) for s in ("01", "02")]
    config = json.loads((whole / "config.json").read_text())
    assert config["recipe"] == "keras" and config["epochs"] == 1
    steps = [-(-(10 - len(f["rows"])) // 4) for f in folds]   # epochs x ceil(n_train / batch)
    assert [f["optimizer_start_step"] for f in folds] == [sum(steps[:k]) for k in range(2)] == [0, 2]
    # a fold run alone starts where the full run started it, and predicts the same
    assert run(dataset, alone, "--subjects", "02") == 0
    one = json.loads((alone / "folds" / "02.json").read_text())
    assert one["optimizer_start_step"] == 2 and one["rows"] == folds[1]["rows"]
    # the port-style recipe: a fresh Adam per fold, other predictions
    assert run(dataset, port, "--subjects", "02", "--recipe", "pytorch") == 0
    other = json.loads((port / "folds" / "02.json").read_text())
    assert other["optimizer_start_step"] == 0 and other["rows"] != one["rows"]
    # a folder of one recipe is refused to the other
    capsys.readouterr()
    assert run(dataset, port, "--subjects", "01") == 2
    assert "recipe='pytorch'" in capsys.readouterr().err
