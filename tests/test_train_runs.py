"""train.py's run folders under stress: shards and resume give the uninterrupted result, a killed
or interrupted run resumes, what cannot be read or written is named in one line and never counted
as done, caches that are damaged or foreign are rebuilt. The demo run they compare with is
test_train.py's `whole`."""
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
from torch.optim.optimizer import register_optimizer_step_post_hook

import builders
import compare
import runfolder
import save_preprocess_weight
import train
from test_train import ROOT, dataset, run, train_cmd, whole  # noqa: F401  (its fixtures and helpers)


def test_shards_and_resume_give_the_uninterrupted_result(dataset, whole, tmp_path):
    sharded = tmp_path / "sharded"
    assert run(dataset, sharded, "--subjects", "01") == 0
    assert not (sharded / "summary.json").exists()   # a fold missing: no summary yet
    assert run(dataset, sharded, "--shard", "2/2") == 0        # subject 02
    full = pd.read_csv(whole / "predictions.csv")
    assert full.equals(pd.read_csv(sharded / "predictions.csv"))
    # a rerun of a finished run trains nothing and rewrites the same summary
    assert run(dataset, sharded) == 0
    assert full.equals(pd.read_csv(sharded / "predictions.csv"))


def test_a_run_missing_folds_is_summarized_only_on_request_and_marked_partial(whole, tmp_path, capsys):
    out = tmp_path / "run"   # the uninterrupted run without fold 02, as a job array with a task still running
    shutil.copytree(whole, out)
    for f in ("folds/02.json", "summary.json", "predictions.csv"):
        os.remove(out / f)
    assert train.main(["--summarize", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {out}: 1 of 2 folds missing (02): rerun the run's command to finish them, or "
                   f"python train.py --summarize {out} --partial summarizes the 1 there is, marked partial")
    assert not (out / "summary.json").exists()
    assert train.main(["--summarize", str(out), "--partial"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["partial"] is True and s["folds"] == 1 and s["samples"] == 5
    assert s["folds_expected"] == ["01", "02"] and s["folds_found"] == ["01"]
    assert "PARTIAL: 1 of 2 folds, missing 02" in capsys.readouterr().out
    assert json.loads((whole / "summary.json").read_text())["partial"] is False   # a whole run says so too
    # a comparison built from it says so
    assert compare.main([str(out), str(out), "--json", str(tmp_path / "c.json")]) == 0
    assert "A is PARTIAL (1 of 2 folds, missing 02)" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())["partial"] == {"a": "1 of 2 folds, missing 02",
                                                                        "b": "1 of 2 folds, missing 02"}


def test_an_unreadable_fold_file_is_named_not_counted_as_done(dataset, whole, tmp_path, capsys):
    out = tmp_path / "run"   # fold 02 damaged; this process runs fold 01 only (--subjects 01)
    shutil.copytree(whole, out)
    (out / "folds" / "02.json").write_bytes(b"")
    os.remove(out / "summary.json")
    assert run(dataset, out, "--subjects", "01") == 0
    log = capsys.readouterr().out
    assert (f"{out / 'folds' / '02.json'}: cannot read fold file (Expecting value: line 1 column 1 "
            "(char 0)): not counted as finished") in log
    assert "1 of 2 folds finished" in log and not (out / "summary.json").exists()


def test_one_subject_ends_in_one_line(demo, tmp_path, capsys):
    sheet = builders.subset_sheet(demo, ["01"], tmp_path / "one.csv")
    assert train.main(["--path", sheet, "--img_root", demo["root"], "--cache_dir", demo["cache"],
                       "--weight_save_path", str(tmp_path / "run"), "--epochs", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --protocol loso holds out one subject a fold and trains on the others: the data "
                   "has 1 subject (01)")
    assert not (tmp_path / "run").exists()


def test_train_log_is_closed_when_a_run_ends(dataset, whole, tmp_path):
    # variants.py runs train.main up to 12 x (seeds + 1) times in one process
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        assert run(dataset, out) == 0   # resumed: trains nothing, summarizes
        assert run(dataset, out, "--subjects", "99") == 2   # stopped by an error once train.log is open
        gc.collect()
    assert [str(w.message) for w in seen if "train.log" in str(w.message)] == []


def test_a_multi_seed_folder_missing_folds_is_partial(dataset, tmp_path, capsys):
    out = tmp_path / "seeds"   # each seed's fold 01 only
    assert run(dataset, out, "--seeds", "0", "1", "--subjects", "01") == 0
    assert not (out / "summary.json").exists()
    capsys.readouterr()
    assert train.main(["--summarize", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{out / 'seed0'}: 1 of 2 folds missing (02)" in err
    assert "--partial" in err
    assert not (out / "summary.json").exists() and not (out / "seed0" / "summary.json").exists()
    assert train.main(["--summarize", str(out), "--partial"]) == 0
    top = json.loads((out / "summary.json").read_text())
    assert top["partial"] is True and top["seeds"] == [0, 1] and top["seeds_partial"] == [0, 1]
    assert all(json.loads((out / f"seed{s}" / "summary.json").read_text())["partial"] for s in (0, 1))
    assert "PARTIAL: seeds 0 1 are missing folds" in capsys.readouterr().out


def fold_rows(run_dir, subject):
    """The predictions of one fold file."""
    return runfolder.read_fold(str(run_dir / "folds" / f"{subject}.json"))[0]["rows"]


def test_sigkill_mid_run_then_resume(dataset, whole, tmp_path):
    out = tmp_path / "killed"   # two folds: killed in the second
    proc = subprocess.Popen(train_cmd(dataset, out), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "folds" / "01.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.listdir(out / "folds") == ["01.json"]   # no half-written files
    # the same command again resumes (in this process: the resume is train.main's, not the shell's)
    assert run(dataset, out) == 0
    assert [fold_rows(out, s) for s in ("01", "02")] == [fold_rows(whole, s) for s in ("01", "02")]


def test_run_folder_with_other_settings_is_refused(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(dataset, out, "--subjects", "01") == 0
    assert run(dataset, out, "--subjects", "02", epochs=2) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "was made with epochs=1, this run has 2" in err, err
    assert run(dataset, out, "--subjects", "02", "--new", epochs=2) == 0
    assert (tmp_path / "run_2" / "folds" / "02.json").is_file()


def edit_apex(sheet, subject):
    """Correct the apex of the first clip of `subject` in a demo sheet, as a researcher would."""
    import openpyxl
    wb = openpyxl.load_workbook(sheet)
    ws = wb.active
    r = next(r for r in range(2, ws.max_row + 1) if ws.cell(r, 1).value == subject)
    ws.cell(r, 4, 5 - int(ws.cell(r, 4).value))   # 4 frames: apex 2 <-> 3
    wb.save(sheet)
    return f"{subject}/{ws.cell(r, 2).value}@1"


def test_run_folder_follows_its_data_and_fold_files(demo, tmp_path, capsys):
    import shutil   # the demo's own sheet (.xlsx), as a researcher would edit it
    copy = dict(sheet=str(tmp_path / "sheet.xlsx"), root=demo["root"], cache=str(tmp_path / "cache"))
    shutil.copy(demo["sheet"], copy["sheet"])
    shutil.copytree(demo["cache"], copy["cache"])
    out = tmp_path / "run"
    assert run(copy, out, "--subjects", "01") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["folds"] == ["01", "02", "03", "04"] and len(config["samples"]) == 20
    # a damaged fold file is named by --summarize, and a rerun trains that fold again
    (out / "folds" / "01.json").write_bytes(b"")
    assert train.main(["--summarize", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(out / "folds" / "01.json") in err and "cannot read fold file" in err
    (out / "folds" / "01.json").write_text('{"subject": "01", "ro')   # cut short
    assert run(copy, out, "--subjects", "01") == 0
    assert "01.json: cannot be read, trained again" in capsys.readouterr().out
    assert len(runfolder.read_fold(str(out / "folds" / "01.json"))[0]["rows"]) == 5
    # a fold of a subject that is not in the run's data is never pooled
    shutil.copy(out / "folds" / "01.json", out / "folds" / "99.json")
    assert train.main(["--summarize", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "99.json: a fold of 99, which is not in this run's data" in err
    os.remove(out / "folds" / "99.json")
    # the same command after an apex of subject 02 (fold 01's training data) was corrected: refused
    fold = (out / "folds" / "01.json").read_bytes()
    sid = edit_apex(copy["sheet"], "02")
    assert run(copy, out, "--subjects", "01") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {out} was trained on other data (1 samples changed: {sid} (apex/frames)): " \
                  "use --new or another --weight_save_path"
    assert (out / "folds" / "01.json").read_bytes() == fold
    assert run(copy, out, "--subjects", "01", "--new") == 0
    assert "(1 rebuilt: their sheet row or frames changed)" in capsys.readouterr().out
    assert (tmp_path / "run_2" / "folds" / "01.json").is_file()


def test_ctrl_c_mid_fold_stops_cleanly_and_resumes(dataset, whole, tmp_path, capsys):
    # A real SIGINT, sent by this process to itself after the first optimizer step of fold 2:
    # Python raises KeyboardInterrupt there, inside the fold, as on Ctrl-C in a terminal.
    # (SIGKILL needs a process of its own: test_sigkill_mid_run_then_resume.)
    out, steps = tmp_path / "interrupted", []

    def interrupt(optimizer, args, kwargs):
        steps.append(1)
        if len(steps) == 3:   # fold 1 takes 2 steps (5 clips, batch 4, 1 epoch)
            os.kill(os.getpid(), signal.SIGINT)
    hook = register_optimizer_step_post_hook(interrupt)
    try:
        assert run(dataset, out) == 130
    finally:
        hook.remove()
    err = capsys.readouterr().err
    assert len(steps) == 3 and "\ninterrupted: finished folds are kept" in err and "Traceback" not in err
    assert os.listdir(out / "folds") == ["01.json"]   # fold 1 kept, nothing half-written
    assert run(dataset, out) == 0   # the same command resumes
    assert pd.read_csv(out / "predictions.csv").equals(pd.read_csv(whole / "predictions.csv"))


def test_unwritable_output_folder_one_line(dataset, tmp_path, capsys):
    # Tests run as root in CI, where permission bits do not stop writes; a path whose parent is a
    # file fails in the same place (creating the run folder) with an OSError.
    (tmp_path / "afile").write_text("x")
    assert run(dataset, tmp_path / "afile" / "run") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "afile" in err


def test_corrupt_or_foreign_cache_is_rebuilt_not_used(dataset, tmp_path, capsys):
    cache = tmp_path / "cache"   # subject 01 only (5 clips): each cache rebuilt costs a pair
    folder = builders.copy_caches(dataset["cache"], "01", cache)
    sheet = builders.subset_sheet(dataset, ["01"], tmp_path / "sheet.csv")
    victim = folder / sorted(os.listdir(folder))[0]
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])   # truncated, as by a full disk
    args = ["--csv_path", sheet, "--root", dataset["root"], "--catego", "CASME",
            "--cache_dir", str(cache), "--workers", "1"]
    assert save_preprocess_weight.main(args) == 0
    assert "1 to build (1 rebuilt: truncated or corrupt)" in capsys.readouterr().out
    assert victim.read_bytes() != good[: len(good) // 2]
    # caches made with other settings are not used for this run's settings either
    assert save_preprocess_weight.main(args + ["--encoding", "minmax"]) == 0
    assert "0 valid" in capsys.readouterr().out


def test_two_shards_in_parallel_into_one_folder(dataset, whole, tmp_path):
    out = tmp_path / "parallel"
    base = train_cmd(dataset, out)
    # (each process has this one's thread count, from OMP_NUM_THREADS (conftest): CPU results are
    # bit-identical only for the same number of threads, as the reduction order changes with it.
    # Passive OpenMP threads sleep at a barrier instead of spinning, so two processes on two cores
    # do not starve each other; the wait policy does not change what is computed.)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    procs = []
    for s in ("01", "02"):   # one fold each, as two jobs of an array would run them
        procs.append(subprocess.Popen(base + ["--subjects", s], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    assert procs[0].poll() is None   # the first still runs as the second starts: they overlap
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert sorted(os.listdir(out / "folds")) == ["01.json", "02.json"]
    assert json.loads((out / "config.json").read_text()) == json.loads((whole / "config.json").read_text())
    # Each fold lands once and the labels match exactly. The probabilities are compared to 1e-4,
    # not bitwise: two processes competing for two cores once differed from the in-process run by
    # 7e-5 under heavy load (bit-identity of resumed and sharded runs is the serial tests' job).
    for s in ("01", "02"):
        got, want = pd.DataFrame(fold_rows(out, s)), pd.DataFrame(fold_rows(whole, s))
        p = [c for c in want if c.startswith("p_")]
        assert got.drop(columns=p).equals(want.drop(columns=p))
        assert np.allclose(got[p], want[p], atol=1e-4, rtol=0)


def test_sigkill_during_preprocessing_leaves_only_complete_caches(dataset, tmp_path, capsys):
    # 5 clips, 2 workers: the kill comes once 2 caches are written, with pairs in flight in the
    # workers and perhaps a cache half-written by this process
    sheet = builders.subset_sheet(dataset, ["01"], tmp_path / "sheet.csv")
    cache = tmp_path / "cache"
    args = ["--csv_path", sheet, "--root", dataset["root"], "--catego", "CASME", "--cache_dir", str(cache),
            "--workers", "2"]
    cmd = [sys.executable, "save_preprocess_weight.py", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    count = lambda: sum(f.endswith(".npz") for _, _, fs in os.walk(cache) for f in fs)
    while count() < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)   # the whole process group: the workers too
    proc.wait()
    made = [os.path.join(r, f) for r, _, fs in os.walk(cache) for f in fs if f.endswith(".npz")]
    assert 2 <= len(made) < 5
    for f in made:   # every .npz there is complete and loads
        with np.load(f) as z:
            assert z["u"].shape == (227, 227) and "meta" in z
    assert save_preprocess_weight.main(args) == 0   # the rerun (in this process) keeps them all
    assert f"{len(made)} valid" in capsys.readouterr().out and count() == 5


def test_train_stops_on_samples_it_cannot_preprocess(dataset, tmp_path, capsys):
    import shutil
    root = tmp_path / "frames"   # subjects 01 and 02 (10 clips): the frames edited are a copy
    for s in ("sub01", "sub02"):
        shutil.copytree(os.path.join(dataset["root"], s), root / s)
    # 01's caches are the demo's (caches follow the frames' content, not their path): the run
    # makes the 5 of 02, one of which fails
    builders.copy_caches(dataset["cache"], "01", tmp_path / "cache")
    victim = sorted((root / "sub02").iterdir())[0]
    os.remove(sorted(victim.iterdir())[-1])   # the clip's last frame: its offset (and maybe apex)
    os.remove(sorted(victim.iterdir())[0])    # and its onset
    argv = ["--path", dataset["sheet"], "--img_root", str(root), "--cache_dir", str(tmp_path / "cache"),
            "--weight_save_path", str(tmp_path / "run"), "--epochs", "1", "--workers", "1", "--device", "cpu"]
    assert train.main(argv) == 2
    cap = capsys.readouterr()
    assert f"02/{victim.name}" in cap.out and "frame not found" in cap.out
    last = cap.err.strip().splitlines()[-1]   # (tqdm's progress bar is on stderr too)
    assert last == "error: 1 samples could not be preprocessed (see above)" and "Traceback" not in cap.err
    # the 4 other caches of 02 were made and are kept for the next run, beside 01's
    made = {s: sum(f.endswith(".npz") for f in os.listdir(builders.cache_folder(tmp_path / "cache", s)))
            for s in ("01", "02")}
    assert made == {"01": 5, "02": 4}
