"""compare.py: the paired comparison of two run folders (python compare.py RUN_A RUN_B) over run
folders written as train.py leaves them, with known predictions: a run against itself and against a
better one, refusals of other samples and labels, multi-seed folders seed by seed. The statistics
themselves are tested in tests/test_metrics.py; trained demo runs are compared in tests/test_train.py
(test_demo_learns_and_shuffled_labels_fall_to_chance)."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_1samp

import compare
import runfolder
from test_metrics import casme_sized
from test_runfolder import write_run


def test_compare_a_run_with_itself_and_with_a_better_one(tmp_path, capsys):
    rows = casme_sized(3, right=0.5)
    write_run(str(tmp_path / "a"), rows)
    better = [(s, l, l if k % 3 else p) for k, (s, l, p) in enumerate(rows)]   # two thirds made right
    write_run(str(tmp_path / "b"), better)
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "a"), "--json", str(tmp_path / "s.json")]) == 0
    same = json.loads((tmp_path / "s.json").read_text())
    for k in ("accuracy", "uf1", "uar"):
        m = same["metrics"][k]
        assert m["difference"] == 0 and m["ci95"] == [0, 0] and m["p_value"] == 1
    assert same["mcnemar"] == dict(right_only_a=0, right_only_b=0, p_value=1.0, test=same["mcnemar"]["test"])
    capsys.readouterr()
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(tmp_path / "ab.json")]) == 0
    out = capsys.readouterr().out
    ab = json.loads((tmp_path / "ab.json").read_text())
    sa, sb = (json.loads((tmp_path / r / "summary.json").read_text()) for r in "ab")
    for k in ("accuracy", "uf1", "uar"):
        m = ab["metrics"][k]
        assert m["difference"] == pytest.approx(sb[k] - sa[k])
        assert m["ci95"][0] > 0 and m["p_value"] < 0.01
    right_a = np.array([l == p for _, l, p in rows])
    right_b = np.array([l == p for _, l, p in better])
    assert ab["mcnemar"]["right_only_b"] == np.sum(right_b & ~right_a) and ab["mcnemar"]["right_only_a"] == 0
    assert ab["mcnemar"]["p_value"] < 1e-6
    lines = [line for line in out.splitlines() if line.strip().startswith(("accuracy", "UF1", "UAR"))]
    assert len(lines) == 3   # one line a metric


def test_runs_over_other_samples_or_labels_are_refused(tmp_path, capsys):
    rows = casme_sized(4)
    write_run(str(tmp_path / "a"), rows)
    write_run(str(tmp_path / "fewer"), rows[:-1])
    write_run(str(tmp_path / "relabelled"), [(s, (l + 1) % 5 if k == 0 else l, p)
                                              for k, (s, l, p) in enumerate(rows)])
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "fewer")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not over the same samples: 1 only in" in err and "@1" in err, err
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "relabelled")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "differently" in err, err
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_multi_seed_folders_compared_seed_by_seed(tmp_path, capsys):
    base = casme_sized(5, right=0.5)
    for s in (0, 1, 2):   # B is A with a seed-dependent share of errors fixed
        rng = np.random.default_rng(s)
        a = [(su, l, l if rng.random() < 0.1 else p) for su, l, p in base]
        write_run(str(tmp_path / "A" / f"seed{s}"), a, seed=s, epochs=2, summarize=False)
        b = [(su, l, l if rng.random() < 0.3 else p) for su, l, p in a]
        write_run(str(tmp_path / "B" / f"seed{s}"), b, seed=s, epochs=2)
    write_run(str(tmp_path / "B" / "seed7"), base, seed=7, epochs=2)   # not in A: left out
    runfolder.summarize(str(tmp_path / "A"), log=lambda *_: None)
    capsys.readouterr()
    assert compare.main([str(tmp_path / "A"), str(tmp_path / "B"), "--json", str(tmp_path / "c.json")]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["seeds"] == [0, 1, 2] and set(c["per_seed"]) == {"0", "1", "2"}
    for k in ("accuracy", "uf1", "uar"):
        a, b = ([json.loads((tmp_path / r / f"seed{s}" / "summary.json").read_text()) for s in (0, 1, 2)]
                for r in "AB")
        d = [b[s][k] - a[s][k] for s in (0, 1, 2)]
        o = c["over_seeds"][k]
        assert o["mean"] == pytest.approx(np.mean(d)) and o["sd"] == pytest.approx(np.std(d, ddof=1))
        assert o["p_value"] == pytest.approx(ttest_1samp(d, 0).pvalue)
        assert all(c["per_seed"][str(s)]["metrics"][k]["p_value"] < 0.01 for s in (0, 1, 2))
    out = capsys.readouterr().out
    assert "paired t-test over seeds" in out and "over 3 seeds (0 1 2)" in out


def test_a_t_test_over_seeds_with_no_spread_is_undefined_not_p_0(tmp_path, capsys):
    base = casme_sized(6, right=0.5)
    better = [(s, l, l if k % 3 == 0 else p) for k, (s, l, p) in enumerate(base)]
    for s in (0, 1, 2):   # every seed the same runs: B - A is the same on every seed
        write_run(str(tmp_path / "A" / f"seed{s}"), base, seed=s)
        write_run(str(tmp_path / "B" / f"seed{s}"), better, seed=s)
    assert compare.main([str(tmp_path / "A"), str(tmp_path / "B"), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    for k in ("accuracy", "uf1", "uar"):
        o = json.loads((tmp_path / "c.json").read_text())["over_seeds"][k]
        assert o["sd"] == 0 and o["mean"] > 0.05 and o["p_value"] is None
        assert o["note"] == "every seed differs by the same amount (sd 0): the t-test over seeds is undefined"
    rows = [l for l in out.splitlines() if l[2:12] in ("accuracy  ", "UF1       ", "UAR       ")]
    assert len(rows) == 3
    for row in rows:
        assert row[68:76].strip() == "-", row   # the p column: no p of 0
    assert "t-test undefined: every seed differs by the same amount (sd 0)" in out


def test_a_predictions_csv_of_another_tool_is_compared_as_a_run(tmp_path, capsys):
    # subject, clip, label, prediction by hand, as class names or as the run's codes: the same
    # comparison as with the run folder that holds those predictions
    rows = casme_sized(4, right=0.5)
    better = [(s, l, l if k % 3 else p) for k, (s, l, p) in enumerate(rows)]
    write_run(str(tmp_path / "a"), rows)
    write_run(str(tmp_path / "b"), better)
    classes = json.loads((tmp_path / "a" / "config.json").read_text())["classes"]
    clip = {}
    table = []
    for s, l, p in better:   # write_run names a subject's samples EP00, EP01, ... in order
        k = clip[s] = clip.get(s, -1) + 1
        table.append(dict(subject=s, clip=f"EP{k:02d}", label=classes[l], prediction=classes[p]))
    names, codes = tmp_path / "names.csv", tmp_path / "codes.csv"
    pd.DataFrame(table).to_csv(names, index=False)
    pd.DataFrame(table).assign(label=[l for _, l, _ in better], prediction=[p for _, _, p in better]) \
        .to_csv(codes, index=False)
    want = compare.compare_runs(str(tmp_path / "a"), str(tmp_path / "b"))
    for csv in (names, codes):
        got = compare.compare_runs(str(tmp_path / "a"), str(csv))
        assert got["metrics"] == want["metrics"] and got["mcnemar"] == want["mcnemar"]
    # the CSV on side A too, and bad CSVs in one line
    assert compare.compare_runs(str(codes), str(tmp_path / "a"))["metrics"]["uf1"]["difference"] == \
        pytest.approx(-want["metrics"]["uf1"]["difference"])
    pd.DataFrame(table[1:]).to_csv(tmp_path / "fewer.csv", index=False)
    pd.DataFrame(table).assign(label="joy").to_csv(tmp_path / "joy.csv", index=False)
    capsys.readouterr()
    for name, message in (("fewer.csv", "are not over the same samples: 1 only in"),
                          ("joy.csv", "row 2: label 'joy' is neither a class of the run")):
        assert compare.main([str(tmp_path / "a"), str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
