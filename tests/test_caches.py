"""caches.py: where a sample's cache lives (always under --cache_dir, one folder per set of
settings), when it is used (its sheet row and frames unchanged) and why one is not; the pool that
builds them keeps what it cannot read."""
import errno
import json
import os
import re
import shutil

import numpy as np
import openpyxl
import pytest

import builders
import caches
import dataloader as dl
import datasets
import make_demo
import save_preprocess_weight as spw

from test_dataloader import data  # noqa: F401  (its fixture)
from test_datasets import custom  # noqa: F401  (its fixture)


def test_custom_caches_with_and_without_alignment(custom, tmp_path):
    s = dl.read_samples(custom["csv"], custom["root"], "CUSTOM")
    one = datasets.Samples(s.table.iloc[:1], s.classes, s.catego, [])
    for face in ("auto", "none"):   # auto = dlib for CUSTOM frames
        assert caches.build_caches(one, str(tmp_path / face), face=face, quiet=True) == []
        (_, path, _, _), = caches.cache_jobs(one, str(tmp_path / face), "fixed", face, "ipol")
        assert path.endswith(os.path.join("P1", "clips%2FP1_happy_12.npz"))   # the clip's "/" encoded
        with np.load(path) as z:
            assert json.loads(str(z["meta"]))["settings"]["face"] == ("dlib" if face == "auto" else "none")


def test_cache_follows_its_sheet_row_and_frames(data, tmp_path, capsys):
    root, cache = tmp_path / "casme", str(tmp_path / "cache")
    shutil.copytree(data["casme"], root)
    sheet = str(root / make_demo.SHEET)
    three = lambda: (lambda s: datasets.Samples(s.table.iloc[:3], s.classes, s.catego, []))(
        dl.read_samples(sheet, str(root), "CASME"))
    s = three()
    assert caches.build_caches(s, cache) == []
    files = [path for _, path, _, _ in caches.cache_jobs(s, cache, "fixed", "auto", "ipol")]
    before = [open(f, "rb").read() for f in files]
    with np.load(files[0]) as z:   # what the cache was made from is in it
        assert json.loads(str(z["meta"]))["sources"] == caches.frame_sources(s)[0]
    # an apex corrected in the sheet (row of sample 0) and an onset frame replaced (sample 1)
    wb = openpyxl.load_workbook(sheet)
    ws = wb.active
    row = next(r for r in range(2, ws.max_row + 1) if ws.cell(r, 2).value == s.table.filename[0])
    assert str(ws.cell(row, 4).value) == "2"
    ws.cell(row, 4, 3)
    wb.save(sheet)
    shutil.copy(s.table.apex_path[1], s.table.onset_path[1])
    s = three()
    assert s.table.apex[0] == 3
    with pytest.raises(datasets.DataError, match="from other frames or sheet row"):   # stale: never read
        dl.load_streams(s, cache, ["F", "G"])
    capsys.readouterr()
    assert caches.build_caches(s, cache) == []
    assert f"caches: 1 valid in {cache}, 2 to build (2 rebuilt: their sheet row or frames changed)" in \
        capsys.readouterr().out
    after = [open(f, "rb").read() for f in files]
    assert [a != b for a, b in zip(after, before)] == [True, True, False]   # those two, no other
    assert dl.load_streams(s, cache, ["F", "G"]).x.shape[1] == 3


# caches: always under --cache_dir, one folder per set of settings, and why one is not used

def test_path_part_is_one_safe_component_and_never_shared():
    names = ["clips/P1", "clips%2FP1", "/abs/clip", "..", ".", ".hidden", "a\\b", "a b", "", "x" * 300,
             "x" * 299 + "y", "спNO.1", "c:clip", "a_1"]
    parts = [caches.path_part(n) for n in names]
    assert len(set(parts)) == len(names)
    for p in parts:
        assert p and p not in (".", "..") and not p.startswith(".") and len(p) <= 100
        assert os.sep not in p and "/" not in p and "\\" not in p and ":" not in p
    assert caches.path_part("EP02_01f") == "EP02_01f" and caches.path_part("spNO.1") == "spNO.1"


def test_caches_stay_under_cache_dir_whatever_the_csv_says(custom, tmp_path, capsys):
    # a CUSTOM CSV of absolute clip paths, a subject that climbs out and one that is absolute
    df = custom["df"].iloc[[0, 4]].copy()
    df["clip"] = [os.path.join(custom["root"], c) for c in df["clip"]]
    df["subject"] = ["../../up", "/abs"]
    csv = tmp_path / "abs.csv"
    df.to_csv(csv, index=False)
    before = {os.path.join(r, f) for r, _, fs in os.walk(custom["root"]) for f in fs}
    cache = tmp_path / "cachex"
    assert spw.main(["--catego", "CUSTOM", "--csv_path", str(csv), "--root", custom["root"],
                     "--cache_dir", str(cache), "--workers", "1"]) == 0
    assert f"caches in {cache}: 2 of 2 samples" in capsys.readouterr().out
    made = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".npz")]
    assert len(made) == 2 and all(m.startswith(str(cache) + os.sep) for m in made)
    assert {os.path.join(r, f) for r, _, fs in os.walk(custom["root"]) for f in fs} == before
    assert all(len(os.path.relpath(m, cache).split(os.sep)) == 3 for m in made)   # tag/subject/clip


def test_caches_of_other_settings_live_side_by_side(data, tmp_path, capsys):
    s = dl.read_samples(data["sheet"], data["casme"], "CASME")
    one = datasets.Samples(s.table.iloc[:1], s.classes, s.catego, [])
    cache = str(tmp_path / "cache")
    settings = [dict(), dict(encoding="minmax"), dict(face="none"), dict(flow="opencv")]
    for kw in settings:
        assert caches.build_caches(one, cache, **kw) == []
    made = sorted(os.path.join(r, f) for r, _, fs in os.walk(cache) for f in fs)
    assert len(made) == 4 and len({os.path.dirname(os.path.dirname(m)) for m in made}) == 4
    stamps = [os.stat(m).st_mtime_ns for m in made]
    capsys.readouterr()
    for kw in settings:   # and back: every one of them is still valid, nothing is rebuilt
        assert caches.build_caches(one, cache, **kw) == []
        assert f"caches: 1 valid in {cache}, 0 to build" in capsys.readouterr().out
    assert [os.stat(m).st_mtime_ns for m in made] == stamps
    tag = os.path.basename(os.path.dirname(os.path.dirname(
        caches.cache_file(cache, one.table.iloc[0], caches.cache_settings(one.table.iloc[0], "minmax")))))
    assert tag.startswith("dlib-minmax-ipol-")


def fake_cache(path, row, settings, sources, **arrays):
    feats = {k: np.zeros((227, 227, 3) if k in ("onset", "apex") else (227, 227), np.uint8)
             for k in ["onset", "apex", "u", "v", "F", "S", "G"]}
    caches.write_cache(path, feats | arrays, settings, sources, row)


def test_read_cache_says_why_and_load_streams_passes_it_on(data, tmp_path, monkeypatch):
    s = dl.read_samples(data["sheet"], data["casme"], "CASME")
    one = datasets.Samples(s.table.iloc[:1], s.classes, s.catego, [])
    cache = str(tmp_path / "cache")
    (row, path, settings, sources), = caches.cache_jobs(one, cache, "fixed", "auto", "ipol")

    def why():   # what read_cache appends, and what load_streams says
        w = []
        assert caches.read_cache(path, settings, ["u", "F"], sources, w) is None
        with pytest.raises(datasets.DataError) as e:
            dl.load_streams(one, cache, ["F"])
        assert str(e.value).startswith(f"{path}: cache ") and "\n" not in str(e.value)
        return w, str(e.value)

    msg = f"{path}: cache missing (run save_preprocess_weight.py with the same --cache_dir and settings)"
    assert why() == (["missing"], msg)
    fake_cache(path, row, settings, sources)
    assert caches.read_cache(path, settings, ["u", "F"], sources)["F"].shape == (227, 227)
    good = open(path, "rb").read()
    w = []
    assert caches.read_cache(path, dict(settings, encoding="minmax"), ["u"], sources, w) is None
    assert w == ["settings"]
    fake_cache(path, row, dict(settings, encoding="minmax"), sources)   # settings of another cache
    assert why() == (["settings"], msg.replace("missing", "made with other settings"))
    fake_cache(path, row, settings, dict(sources, apex=99))
    assert why()[0] == ["sources"] and "made from other frames or sheet row" in why()[1]
    for bad in (good[:len(good) // 2], b"", b"not a cache", good[:100] + bytes(200) + good[300:]):
        with open(path, "wb") as f:
            f.write(bad)
        assert why() == (["corrupt"], msg.replace("missing", "truncated or corrupt"))
    np.save(open(path, "wb"), np.zeros((227, 227), np.uint8))   # an .npy, not an .npz
    assert why()[0] == ["corrupt"]
    fake_cache(path, row, settings, sources, F=np.zeros((10, 10), np.uint8))   # not a 227x227 image
    assert why()[0] == ["corrupt"]
    fake_cache(path, row, settings, sources, F=np.zeros((227, 227), np.float32))
    assert why()[0] == ["corrupt"]
    # there but unreadable: an error naming the file, not a rebuild
    os.remove(path)
    os.mkdir(path)
    with pytest.raises(caches.CacheError,
                       match=f"^{re.escape(path)}: cannot read cache \\(Is a directory\\)$"):
        caches.read_cache(path, settings, ["u"], sources)
    os.rmdir(path)
    fake_cache(path, row, settings, sources)

    def eio(*a, **kw):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(np, "load", eio)
    with pytest.raises(caches.CacheError) as e:
        dl.load_streams(one, cache, ["F"])
    assert str(e.value) == f"{path}: cannot read cache (Input/output error)"


def test_build_caches_lists_an_unreadable_cache_and_keeps_it(demo, tmp_path, capsys):
    sheet = builders.subset_sheet(demo, ["01"], tmp_path / "sheet.csv")
    folder = builders.copy_caches(demo["cache"], "01", tmp_path / "cache")
    victim = folder / sorted(os.listdir(folder))[0]
    os.remove(victim)
    victim.mkdir()   # stands for a cache this user cannot read
    assert spw.main(["--csv_path", sheet, "--root", demo["root"], "--catego", "CASME",
                     "--cache_dir", str(tmp_path / "cache")]) == 1
    out = capsys.readouterr().out
    assert f"caches: 4 valid in {tmp_path / 'cache'}, 0 to build, 1 unreadable" in out
    assert f"{victim}: cannot read cache (Is a directory)" in out and "1 samples failed" in out
    assert victim.is_dir()
