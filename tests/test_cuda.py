"""The CUDA path, on a GPU machine (skipped without CUDA), in one process (the tests share the
GPU one at a time; under xdist, pytest.ini's loadgroup sends them to one worker):

    python -m pytest -q -n 0 tests/test_cuda.py && python bench.py --device cuda --json bench_gpu.json

one demo fold in fp32 and bf16 (with --save_weights), CPU and CUDA logits of the same weights,
--final + predict.py, a --deterministic fold twice, bench.py --quick and the IPOL flow, all on
CUDA, and that --device auto takes this GPU. Not yet run on a GPU (docs/gpu.md)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import builders
import flags
import make_demo
from network import build_model
import predict
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
              pytest.mark.cuda, pytest.mark.xdist_group("cuda")]


@pytest.fixture(scope="module")
def dataset(demo, tmp_path_factory):
    """Subjects 01-03 of the shared demo of conftest (15 clips), with their caches."""
    d = tmp_path_factory.mktemp("cuda")
    sheet = builders.subset_sheet(demo, ["01", "02", "03"], d / "sheet.csv")
    return dict(sheet=sheet, root=demo["root"], cache=demo["cache"], dir=d)


def run(dataset, out, *extra):
    return train.main(["--path", dataset["sheet"], "--img_root", dataset["root"],
                       "--cache_dir", dataset["cache"],
                       "--weight_save_path", str(out), "--epochs", "3", "--batch_size", "4",
                       "--learning_rate", "1e-3", "--device", "cuda", *extra])


def test_auto_takes_this_gpu(capsys):
    # the build has kernels for it (else tests/test_flags.py's refusal would apply) and says nothing
    assert flags.gpu_unsupported(torch, torch.cuda.current_device()) is None
    assert flags.resolve_device("auto") == "cuda" and capsys.readouterr().err == ""


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_one_fold_on_cuda(dataset, tmp_path, amp):
    if amp == "bf16" and not train.native_bf16("cuda")[0]:
        pytest.skip(train.native_bf16("cuda")[1])
    assert run(dataset, tmp_path / "run", "--amp", amp, "--subjects", "01", "--save_weights") == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["device_type"] == "cuda" and config["amp"] == amp
    assert config["tf32"] is False and config["deterministic"] is False
    assert not torch.backends.cudnn.allow_tf32   # fp32 convolutions are fp32, not TF32
    if amp == "none":
        assert "fp32 without TF32" in (tmp_path / "run" / "train.log").read_text()
    # the fold's weights load where there is no GPU: no map_location, CPU tensors
    state = torch.load(tmp_path / "run" / "folds" / "01.pt", weights_only=True)
    assert state and all(v.device.type == "cpu" for v in state.values())
    fold = json.loads((tmp_path / "run" / "folds" / "01.json").read_text())
    assert len(fold["rows"]) == 5 and len(fold["train_loss"]) == 3
    assert all(np.isfinite(fold["train_loss"]))
    probs = np.array([[r[f"p_{c}"] for c in make_demo.CLASSES] for r in fold["rows"]])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)


def test_cpu_and_cuda_logits_of_the_same_weights_agree():
    native, bf16 = train.native_bf16("cuda")[0], None   # autocast would emulate bf16 on an older GPU
    torch.manual_seed(0)
    model = build_model("DSSN", 5, "mul").eval()
    xs = [torch.randint(0, 256, (4, 3, 227, 227), dtype=torch.uint8) for _ in range(2)]
    with torch.no_grad():
        cpu = model(*xs)
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False   # plain fp32
        try:
            gpu = model.to("cuda", memory_format=torch.channels_last)(*[x.cuda() for x in xs]).cpu()
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        if native:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf16 = model(*[x.cuda() for x in xs]).float().cpu()
    scale = cpu.abs().max()
    assert torch.isfinite(gpu).all() and scale > 0
    assert (gpu - cpu).abs().max() <= 1e-4 * scale, (gpu - cpu).abs().max() / scale   # summation order only
    if native:
        assert (bf16 - cpu).abs().max() <= 5e-2 * scale, (bf16 - cpu).abs().max() / scale  # 8-bit mantissa


def test_final_model_and_predict_on_cuda(dataset, tmp_path, capsys):
    assert run(dataset, tmp_path / "final", "--final") == 0
    weights = str(tmp_path / "final" / "final.pt")
    ckpt = torch.load(weights, weights_only=True)   # no map_location: tensors come back where they were saved
    assert all(v.device.type == "cpu" for v in ckpt["state_dict"].values())   # loadable without a GPU
    folder = os.path.join(dataset["root"], "sub01",
                          sorted(os.listdir(os.path.join(dataset["root"], "sub01")))[0])
    pair = ["--onset", os.path.join(folder, "img1.jpg"), "--apex", os.path.join(folder, "img3.jpg")]
    capsys.readouterr()
    assert predict.main(["--weights", weights, "--device", "cuda", "--json", *pair]) == 0
    on_gpu = json.loads(capsys.readouterr().out)
    assert predict.main(["--weights", weights, "--device", "cpu", "--json", *pair]) == 0
    on_cpu = json.loads(capsys.readouterr().out)
    assert set(on_gpu["probabilities"]) == set(make_demo.CLASSES)
    for c, p in on_cpu["probabilities"].items():   # fp32 both (TF32 off): summation order only
        assert abs(on_gpu["probabilities"][c] - p) < 1e-3, (c, p, on_gpu["probabilities"][c])


def test_deterministic_fold_repeats_bit_for_bit_on_cuda(dataset, tmp_path):
    # two processes, as two runs of a job array would be: CUBLAS_WORKSPACE_CONFIG is set before
    # CUDA initialises in each
    cmd = [sys.executable, "train.py", "--path", dataset["sheet"], "--img_root", dataset["root"],
           "--cache_dir", dataset["cache"], "--epochs", "3", "--batch_size", "4", "--learning_rate", "1e-3",
           "--device", "cuda", "--deterministic", "--subjects", "01"]
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    folds = []
    for n in range(2):
        r = subprocess.run(cmd + ["--weight_save_path", str(tmp_path / f"run{n}")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        fold = json.loads((tmp_path / f"run{n}" / "folds" / "01.json").read_text())
        folds.append({k: v for k, v in fold.items() if k != "seconds"})
    assert json.loads((tmp_path / "run0" / "config.json").read_text())["deterministic"] is True
    assert folds[0] == folds[1]


def test_bench_quick_on_cuda(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "bench.py", "--quick", "--device", "cuda", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["device"] == torch.cuda.get_device_name("cuda")
    assert res["tf32"] is False and "peak fp32 (TF32 off)" in r.stdout   # the fp32 peak is fp32's
    for prec, m in res["models"]["DSSN-mul"].items():
        assert m["train_samples_per_s"] > 0 and m["infer_samples_per_s"] > 0 and res["peak"][prec]["peak"] > 0
    # bf16 measured exactly where the GPU has it natively: compute capability 8.0 (Ampere) or newer
    assert ("bf16" in res["models"]["DSSN-mul"]) == (torch.cuda.get_device_capability("cuda") >= (8, 0))


def test_ipol_flow_on_cuda_matches_the_program_and_reports_its_speed():
    # the reference pairs of tests/test_preprocess.py, batched on the GPU: the same agreement
    # with the IPOL program as on the CPU, and the batched rate (printed; run with -s to see it)
    import time
    import preprocess as pp
    from test_preprocess import IPOL_DIR, read_flo
    import cv2
    I0 = np.stack([cv2.imread(os.path.join(IPOL_DIR, f"pair{k}_I0.png"), cv2.IMREAD_GRAYSCALE)
                   for k in range(8)])
    I1 = np.stack([cv2.imread(os.path.join(IPOL_DIR, f"pair{k}_I1.png"), cv2.IMREAD_GRAYSCALE)
                   for k in range(8)])
    tf32 = torch.backends.cudnn.allow_tf32
    try:   # cuDNN's default (TF32 on) and off: the flow takes no TF32 either way
        torch.backends.cudnn.allow_tf32 = True
        flow = pp.tvl1_ipol(torch.from_numpy(I0).cuda(), torch.from_numpy(I1).cuda())
        torch.backends.cudnn.allow_tf32 = False
        assert torch.equal(pp.tvl1_ipol(torch.from_numpy(I0).cuda(), torch.from_numpy(I1).cuda()), flow)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert flow.is_cuda and flow.shape == (8, 2, 227, 227)
    for k in range(8):   # the limits of the CPU test (tests/test_preprocess.py)
        epe = np.linalg.norm(flow[k].permute(1, 2, 0).cpu().numpy()
                             - read_flo(os.path.join(IPOL_DIR, f"pair{k}.flo")), axis=2)
        assert epe.mean() <= 3e-5 and epe.max() <= 0.03, (k, epe.mean(), epe.max())
    big0, big1 = (torch.from_numpy(np.tile(I0, (16, 1, 1))).cuda(),
                  torch.from_numpy(np.tile(I1, (16, 1, 1))).cuda())
    pp.tvl1_ipol(big0, big1)
    torch.cuda.synchronize()
    t = time.perf_counter()
    pp.tvl1_ipol(big0, big1)
    torch.cuda.synchronize()
    print(f"\nIPOL TV-L1 on {torch.cuda.get_device_name()}: "
          f"{len(big0) / (time.perf_counter() - t):.0f} pairs/s "
          f"(batch of {len(big0)} 227x227 pairs)")
