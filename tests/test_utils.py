"""Tests for utils.py (shared helpers, SAMM frame renamer). Run: python -m pytest tests/test_utils.py -q"""
import argparse
import contextlib
import io
import os
import subprocess
import sys
import types

import pytest

import utils

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def snapshot(root):
    """{relative path: content} of every file under root."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)


@pytest.fixture
def samm(tmp_path):
    """Fake SAMM root: unpadded, padded, non-matching and conflicting files. Content = name."""
    root = tmp_path / "SAMM"
    files = [
        "006/006_1_2/006_5562.jpg",   # conflict: 006_05562.jpg exists too
        "006/006_1_2/006_05562.jpg",
        "006/006_1_2/006_5563.jpg",   # -> 006_05563.jpg
        "006/006_1_2/006_05564.jpg",  # already padded
        "006/006_1_2/notes.txt",      # not {prefix}_{digits}.{ext}
        "007/007_7_1/007_42.PNG",     # -> 007_00042.PNG, extension kept as is
        "007/007_7_1/007_4000.bmp",   # -> 007_04000.bmp
        "007/007_7_1/007_00099.png",  # already padded
        "007/007_7_1/007_12.txt",     # frame-like name, not an image
    ]
    for f in files:
        write(str(root / f), f.encode())
    return root


def cli(*args):
    """`python utils.py ARGS` as a process: its exit status, stdout and stderr."""
    return subprocess.run([sys.executable, "utils.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def main(*args):
    """utils.main(ARGS) in this process (what `python utils.py ARGS` runs, without a new
    interpreter to start), with what it printed: the same fields as cli()."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = utils.main([str(a) for a in args])
        except SystemExit as e:   # argparse's errors
            code = e.code
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


EXPECTED = {
    "006/006_1_2/006_5563.jpg": "006/006_1_2/006_05563.jpg",
    "007/007_7_1/007_42.PNG": "007/007_7_1/007_00042.PNG",
    "007/007_7_1/007_4000.bmp": "007/007_7_1/007_04000.bmp",
}


def test_plan(samm):
    renames, already, skipped = utils.samm_rename_plan(str(samm))
    rel = lambda p: os.path.relpath(p, samm)
    assert {rel(o): rel(n) for o, n in renames} == EXPECTED
    assert already == 3  # 006_05562, 006_05564, 007_00099
    reasons = {rel(p): r for p, r in skipped}
    assert set(reasons) == {"006/006_1_2/006_5562.jpg", "006/006_1_2/notes.txt", "007/007_7_1/007_12.txt"}
    assert reasons["006/006_1_2/006_5562.jpg"].startswith("conflict")
    assert reasons["006/006_1_2/notes.txt"] == utils.NOT_FRAME
    assert reasons["007/007_7_1/007_12.txt"] == utils.NOT_IMAGE


def test_plan_single_clip_and_width(samm):
    clip = samm / "007" / "007_7_1"
    renames, already, _ = utils.samm_rename_plan(str(clip), width=6)
    names = sorted((os.path.basename(o), os.path.basename(n)) for o, n in renames)
    assert names == [("007_00099.png", "007_000099.png"), ("007_4000.bmp", "007_004000.bmp"),
                     ("007_42.PNG", "007_000042.PNG")]
    assert already == 0


def test_same_target_is_conflict_for_both(tmp_path):
    write(str(tmp_path / "006_1.jpg"), b"a")
    write(str(tmp_path / "006_01.jpg"), b"b")
    renames, _, skipped = utils.samm_rename_plan(str(tmp_path))
    assert renames == []
    assert len(skipped) == 2 and all(r.startswith("conflict") for _, r in skipped)


def test_apply_renames_never_overwrites(tmp_path):
    write(str(tmp_path / "a_1.jpg"), b"old")
    write(str(tmp_path / "a_00001.jpg"), b"target")  # appeared after planning
    plan = [(str(tmp_path / "a_1.jpg"), str(tmp_path / "a_00001.jpg"))]
    assert utils.apply_renames(plan) == plan
    assert snapshot(tmp_path) == {"a_1.jpg": b"old", "a_00001.jpg": b"target"}


def test_cli_dry_run_changes_nothing(samm):
    before = snapshot(samm)
    r = main("samm_rename", "--root", samm)
    assert snapshot(samm) == before
    assert r.returncode == 1  # the conflict is reported in the dry run too
    listed = [l for l in r.stdout.splitlines() if " -> " in l]
    assert sorted(listed) == sorted(f"{o} -> {n}" for o, n in EXPECTED.items())
    assert "3 files would be renamed, 3 already padded, 3 skipped" in r.stdout
    assert "006_5562.jpg" in r.stderr and "conflict" in r.stderr


def test_cli_apply_then_idempotent(samm):
    before = snapshot(samm)
    r = main("samm_rename", "--root", samm, "--apply")
    assert r.returncode == 1, r.stderr  # conflict -> non-zero, after the safe renames
    after = snapshot(samm)
    expected = {EXPECTED.get(k, k): v for k, v in before.items()}
    assert after == expected  # exactly the planned renames, contents moved with them
    # Conflicting pair untouched, both contents intact.
    assert after["006/006_1_2/006_5562.jpg"] == b"006/006_1_2/006_5562.jpg"
    assert after["006/006_1_2/006_05562.jpg"] == b"006/006_1_2/006_05562.jpg"
    assert "3 files renamed, 3 already padded, 3 skipped" in r.stdout

    r2 = main("samm_rename", "--root", samm, "--apply")
    assert snapshot(samm) == after
    assert not [l for l in r2.stdout.splitlines() if " -> " in l]
    assert "0 files renamed, 6 already padded, 3 skipped" in r2.stdout
    renames, _, _ = utils.samm_rename_plan(str(samm))
    assert renames == []


def test_cli_clean_tree_exits_zero(tmp_path):
    clip = tmp_path / "006_1_2"
    write(str(clip / "006_7.jpg"), b"x")
    r = main("samm_rename", "--root", clip, "--apply")
    assert r.returncode == 0, r.stderr
    assert os.listdir(clip) == ["006_00007.jpg"]
    assert "1 files renamed, 0 already padded, 0 skipped" in r.stdout


def test_cli_missing_root(tmp_path):
    r = cli("samm_rename", "--root", tmp_path / "nope")
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize("flag, kind, text, message", [
    ("--epochs", utils.positive_int, "0", "must be 1 or more, got 0"),
    ("--epochs", utils.positive_int, "2.5", "expected an integer, got '2.5'"),
    ("--seed", utils.nonneg_int, "-1", "must be 0 or more, got -1"),
    ("--epochs", utils.int_range(2, 4), "5", "must be 2..4, got 5"),
    ("--learning_rate", utils.positive_float, "0", "must be a number above 0, got 0"),
    ("--learning_rate", utils.positive_float, "nan", "must be a number above 0, got nan"),
    ("--learning_rate", utils.positive_float, "inf", "must be a number above 0, got inf"),
    ("--learning_rate", utils.positive_float, "1e-4x", "expected a number, got '1e-4x'"),
    ("--shard", utils.shard, "3/2", "expected I/N with 1 <= I <= N (e.g. 2/4), got '3/2'"),
    ("--shard", utils.shard, "0/2", "expected I/N with 1 <= I <= N (e.g. 2/4), got '0/2'"),
    ("--shard", utils.shard, "1-2", "expected I/N with 1 <= I <= N (e.g. 2/4), got '1-2'"),
])
def test_flag_types_refuse_bad_values_in_one_line_naming_the_flag(capsys, flag, kind, text, message):
    p = argparse.ArgumentParser(prog="train.py")
    p.add_argument(flag, type=kind)
    with pytest.raises(SystemExit) as e:
        p.parse_args([flag, text])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]   # argparse's usage line, then the error
    assert err == f"train.py: error: argument {flag}: {message}", err


def test_flag_types_give_the_values_they_parse():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=utils.positive_int)
    p.add_argument("--learning_rate", type=utils.positive_float)
    p.add_argument("--shard", type=utils.shard)
    a = p.parse_args(["--epochs", "3", "--learning_rate", "1e-4", "--shard", "2/4"])
    assert (a.epochs, a.learning_rate, a.shard) == (3, 1e-4, (2, 4))
    assert p.parse_args(["--shard", "1/1"]).shard == (1, 1)


def test_progress_writes_plain_lines_when_not_a_terminal():
    f = io.StringIO()   # a log file or a pipe: no carriage returns, one readable line per update
    bar = utils.progress(range(4), "train", unit="epoch", every=0, file=f)
    for i in bar:
        bar.set_postfix(loss=f"{i:.3f}")
    lines = f.getvalue().splitlines()
    assert "\r" not in f.getvalue() and len(lines) == 3, lines   # the last item is left to the caller
    assert lines[0].startswith("train: 1/4 epochs") and lines[0].endswith("loss 0.000")
    assert lines[2].startswith("train: 3/4 epochs") and lines[2].endswith("loss 2.000")
    quiet = io.StringIO()
    assert (list(utils.progress(iter(range(3)), "x", every=3600, file=quiet)) == [0, 1, 2]
            and quiet.getvalue() == "")


def test_atomic_write_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync",
                        lambda fd: (synced.append(os.path.realpath(f"/proc/self/fd/{fd}")), real(fd)))
    path = tmp_path / "sub" / "fold.json"
    utils.atomic_write(str(path), lambda f: f.write(b"{}"))
    assert path.read_bytes() == b"{}" and os.listdir(tmp_path / "sub") == ["fold.json"]
    # the temp file before the rename, then the folder, so the rename survives a power cut
    assert len(synced) == 2 and synced[0].startswith(str(tmp_path / "sub" / ".tmp-"))
    assert synced[1] == str(tmp_path / "sub")


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    path = tmp_path / "summary.json"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        utils.atomic_write(str(path),
                           lambda f: (f.write(b"half"), (_ for _ in ()).throw(RuntimeError("boom"))))
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["summary.json"]


def test_cli_one_line_for_our_errors_traceback_for_bugs(capsys):
    def bad_input():
        raise utils.UserError("sheet.xlsx: row 7: apex is not a number")
    assert utils.cli(bad_input) == 2
    assert capsys.readouterr().err == "error: sheet.xlsx: row 7: apex is not a number\n"

    def unreadable():
        open("/nonexistent/folder/fold.json")
    assert utils.cli(unreadable) == 2
    assert capsys.readouterr().err.startswith("error: /nonexistent/folder/fold.json: ")

    def interrupted():
        raise KeyboardInterrupt
    assert utils.cli(interrupted, "interrupted: rerun to resume") == 130
    assert "interrupted: rerun to resume" in capsys.readouterr().err

    def bug():   # e.g. a slip in a researcher's edited code: the traceback must survive
        return {}["missing"]
    with pytest.raises(KeyError):
        utils.cli(bug)
    with pytest.raises(ValueError):
        utils.cli(lambda: int("x"))


def test_cpus_follow_this_process_affinity():
    import save_preprocess_weight
    import train
    mask = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(mask)})   # as `taskset -c 0` or a one-CPU SLURM job would
    try:
        one = utils.cpus()
        defaults = [m.parser().get_default("workers") for m in (train, save_preprocess_weight)]
    finally:
        os.sched_setaffinity(0, mask)
    assert one == 1 and defaults == [1, 1]   # not the machine's count
    assert utils.cpus() == len(mask)


def _parent(_):
    return os.getppid()


def test_pool_workers_are_not_forks_of_a_process_with_threads():
    # This process runs torch's and OpenMP's threads (the suite trains in it); a fork of it could
    # copy a lock one of them holds. The workers come from a server that ran nothing.
    import torch
    torch.ones(256, 256) @ torch.ones(256, 256)
    with utils.pool(2) as p:
        parents = set(p.imap_unordered(_parent, range(4)))
    assert os.getpid() not in parents and len(parents) == 1
