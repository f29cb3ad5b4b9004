import json
import math
import os
import subprocess
import sys

import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Forward multiply-adds (MACs) of one 227x227 sample, by hand (a MAC is 2 FLOPs):
CONV1 = 96 * 55 * 55 * (3 * 11 * 11)        # 96 maps of 55x55, 363 MACs each  = 105,415,200
LRN1 = 96 * 27 * 27 * 96                    # band 1x1 conv 96->96 on 27x27     =   6,718,464
CONV2 = 256 * 27 * 27 * (48 * 5 * 5)        # 2 groups: 48 inputs a map, 5x5   = 223,948,800
LRN2 = 256 * 13 * 13 * 256                  # band 1x1 conv 256->256 on 13x13  =  11,075,584
STREAM = CONV1 + LRN1 + CONV2 + LRN2        #                                  = 347,158,048
FC = 57_600 * 5                             # linear 57,600 -> 5               =     288,000


def test_flop_count_by_hand():
    assert STREAM == 347_158_048
    dssn = 2 * (2 * STREAM + FC)
    assert dssn == 1_389_208_192                        # ~1.39 GFLOP a DSSN (add/mul) sample
    assert bench.forward_flops("DSSN", "mul") == dssn
    assert bench.forward_flops("DSSN", "add") == dssn
    assert bench.forward_flops("DSSN", "cat") == dssn + 2 * FC   # 115,200 features
    assert bench.forward_flops("SSSN") == 2 * (STREAM + FC)
    # training: 3x forward, except conv1 (no input gradient) and the LRN bands (constant, no
    # weight gradient): 2x
    train = 2 * (2 * (2 * CONV1 + 2 * LRN1 + 3 * CONV2 + 2 * LRN2) + 3 * FC)
    assert train == 3_674_787_584
    assert bench.train_flops("DSSN", "mul") == train


def test_quick_run_writes_positive_figures(tmp_path):
    # --quick at batch 8 keeps this to a few seconds on 2 cores; the figures' meaning is the same.
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "bench.py", "--quick", "--skip_preprocess", "--json", str(out),
                        "--batch", "8", "--fold_samples", "16"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    for key in ("train_samples_per_s", "infer_samples_per_s", "train_gflops", "peak_gflops",
                "train_samples_per_s_bf16", "infer_samples_per_s_bf16", "train_gflops_bf16",
                "peak_gflops_bf16", "flops_forward_per_sample", "flops_train_per_sample"):
        assert isinstance(res[key], (int, float)) and math.isfinite(res[key]) and res[key] > 0, key
    # the share of an epoch outside forward..optimiser step: a fraction, measured in train.py's loop
    assert 0 <= res["data_overhead"] < 1
    assert math.isfinite(res["data_overhead_vs_pure"])   # may dip below 0 by timing noise
    assert res["preprocess_pairs_per_s"] is None         # skipped
    assert res["models"]["DSSN-mul"]["fp32"]["train_samples_per_s"] == res["train_samples_per_s"]
    assert res["batch"] == 8 and res["threads"] >= 1 and res["torch"]
    assert "train samples/s" in r.stdout and "load average" in r.stdout


def test_preprocess_benchmark_runs_build_caches(tmp_path):
    # 1 subject x 5 clips, with 1 worker and with 2 forked workers
    res = bench.bench_preprocess((320, 240), 2, subjects=1, clips_per_class=1)
    assert set(res) == {1, 2}
    for pairs_per_s, pairs, seconds in res.values():
        assert pairs == 5 and seconds > 0 and pairs_per_s > 0
