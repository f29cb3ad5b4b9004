import json
import math

import pytest
import torch

import bench
import train

# Forward multiply-adds (MACs) of one 227x227 sample, by hand (a MAC is 2 FLOPs):
CONV1 = 96 * 55 * 55 * (3 * 11 * 11)        # 96 maps of 55x55, 363 MACs each  = 105,415,200
LRN1 = 96 * 27 * 27 * 96                    # band 1x1 conv 96->96 on 27x27     =   6,718,464
CONV2 = 256 * 27 * 27 * (48 * 5 * 5)        # 2 groups: 48 inputs a map, 5x5   = 223,948,800
LRN2 = 256 * 13 * 13 * 256                  # band 1x1 conv 256->256 on 13x13  =  11,075,584
STREAM = CONV1 + LRN1 + CONV2 + LRN2        #                                  = 347,158,048
FC = 57_600 * 5                             # linear 57,600 -> 5               =     288,000


def test_torch_flop_count_equals_the_count_by_hand():
    # bench.flops counts with torch's FlopCounterMode, for any declared network; for the paper's
    # DSSN it must give the count by hand
    assert STREAM == 347_158_048
    dssn = 2 * (2 * STREAM + FC)
    assert dssn == 1_389_208_192                        # ~1.39 GFLOP a DSSN (add/mul) sample
    # training: 3x forward, except conv1 (no input gradient) and the LRN bands (constant, no
    # weight gradient): 2x
    train = 2 * (2 * (2 * CONV1 + 2 * LRN1 + 3 * CONV2 + 2 * LRN2) + 3 * FC)
    assert train == 3_674_787_584
    assert bench.flops("DSSN", "mul") == (dssn, train)
    assert bench.flops("DSSN", "cat")[0] == dssn + 2 * FC   # 115,200 features


@pytest.fixture
def torch_flags():
    """bench.main sets torch's determinism flags as train.py does; put them back for other tests."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.utils.deterministic.fill_uninitialized_memory, torch.get_num_threads())
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.utils.deterministic.fill_uninitialized_memory = saved[2]
    torch.set_num_threads(saved[3])


def test_quick_run_reports_figures_and_ratios_to_peak(tmp_path, capsys, torch_flags, cpu_native_bf16):
    # --quick: batch 8, 2 epochs, a 512 matmul, 5 preprocessed pairs: seconds on 2 cores. In this
    # process (bench.main is what `python bench.py` runs): no second torch import to wait for.
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--device", "cpu", "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["batch"] == 8 and res["threads"] >= 1 and res["torch"] == torch.__version__ and res["cpu"]
    ok, why = train.native_bf16("cpu")
    assert res["bf16"] == ok == cpu_native_bf16   # bf16 measured exactly where the CPU has it natively
    precs = {"fp32", "bf16"} if ok else {"fp32"}
    assert set(res["peak"]) == precs and set(res["models"]["DSSN-mul"]) == precs
    if not ok:   # skipped, and said why, on screen and in the JSON
        assert res["bf16_skipped"] == why and f"bf16 skipped: {why}" in stdout
    for prec in precs:
        m, peak = res["models"]["DSSN-mul"][prec], res["peak"][prec]["peak"]
        for key in ("train_samples_per_s", "infer_samples_per_s", "train_gflops", "infer_gflops"):
            assert math.isfinite(m[key]) and m[key] > 0, key
        assert m["train_gflops"] == pytest.approx(m["train_samples_per_s"] * 3_674_787_584 / 1e9)
        assert m["train_peak_ratio"] == pytest.approx(m["train_gflops"] / peak)
        assert len(m["train_epochs"]) == 1   # 2 epochs, the first untimed
    pre = res["preprocess_pairs_per_s"]
    assert set(pre) == {"ipol", "opencv"} and pre["ipol"]["1"] > 0 and pre["opencv"]["1"] > 0
    assert "% of peak" in stdout and "pairs/s" in stdout
