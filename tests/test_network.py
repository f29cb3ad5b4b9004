import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import builders
import dataloader as dl
import network
from network import (DSSN, IMAGENET_MEAN, LRN, MODELS, SSSN, Trunk, build_model, count_parameters,
                     keras_he_normal_, load_pretrained)


def lrn_reference(a, n=5, alpha=1e-4, beta=0.75, k=2.0):
    """The authors' Keras crosschannelnormalization, written as its loop over channel offsets."""
    half = n // 2
    sq = F.pad(a * a, (0, 0, 0, 0, half, half))   # zero channels on both sides
    scale = torch.full_like(a, k)
    for i in range(n):
        scale = scale + alpha * sq[:, i:i + a.shape[1]]
    return a / scale ** beta


def test_parameter_counts():
    assert count_parameters(SSSN(5)) == 630_405
    assert count_parameters(DSSN(5, mode="add")) == 972_805
    assert count_parameters(DSSN(5, mode="mul")) == 972_805
    assert count_parameters(DSSN(5, mode="cat")) == 1_260_805
    assert DSSN(5).mode == "mul"   # the authors' fusion is the default


def test_lrn_matches_authors_formula_not_torch():
    torch.manual_seed(0)
    a = torch.randn(2, 96, 7, 7) * 30   # large activations so the alpha term matters
    ours = LRN(96)(a)
    assert torch.allclose(ours, lrn_reference(a), rtol=1e-5, atol=1e-6)
    # torch's LocalResponseNorm divides alpha by the window: a different, weaker normalisation
    theirs = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a)
    assert not torch.allclose(ours, theirs, rtol=1e-3)


def trunk_reference(trunk, x):
    """The authors' order of operations, unfused: normalise, conv1, ReLU, pool, LRN, ..."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    x = (x.float() - mean) / 255.0
    x = lrn_reference(F.max_pool2d(F.relu(trunk.conv1(x)), 3, 2))
    x = lrn_reference(F.max_pool2d(F.relu(trunk.conv2(x)), 3, 2))
    return F.pad(x, (1, 1, 1, 1))


def test_trunk_shape_and_fast_path_equals_reference():
    torch.manual_seed(0)
    trunk = Trunk().eval()
    x = torch.randint(0, 256, (2, 3, 227, 227), dtype=torch.uint8)
    out = trunk(x)
    assert out.shape == (2, 256, 15, 15)
    assert out[:, :, 0].abs().max() == 0 and out[:, :, :, -1].abs().max() == 0   # the zero pad
    ref = trunk_reference(trunk, x)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5)
    cl = trunk(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["add", "mul", "cat"])
def test_dssn_fusion(mode):
    torch.manual_seed(0)
    m = DSSN(3, mode=mode).eval()
    a, b = (torch.randint(0, 256, (2, 3, 227, 227), dtype=torch.uint8) for _ in range(2))
    fa, fb = m.trunks[0](a), m.trunks[1](b)
    want = {"add": fa + fb, "mul": fa * fb, "cat": torch.cat([fa, fb], 1)}[mode]
    assert torch.allclose(m.features(a, b), want)
    assert m(a, b).shape == (2, 3)
    with pytest.raises(ValueError, match="takes 2 streams, got 1"):
        m(a)


@pytest.mark.parametrize("mode", ["add", "mul", "cat"])
def test_dssn_takes_one_trunk_per_stream(mode):
    torch.manual_seed(0)
    m = build_model("DSSN", 3, mode, streams=3).eval()
    assert len(m.trunks) == 3
    assert count_parameters(m) == 3 * 342_400 + (3 if mode == "cat" else 1) * 57_600 * 3 + 3
    x = [torch.randint(0, 256, (2, 3, 227, 227), dtype=torch.uint8) for _ in range(3)]
    f = [t(s) for t, s in zip(m.trunks, x)]
    want = {"add": f[0] + f[1] + f[2], "mul": f[0] * f[1] * f[2], "cat": torch.cat(f, 1)}[mode]
    assert torch.allclose(m.features(*x), want)
    # the paper's two-stream DSSN draws exactly the weights it draws as DSSN(...)
    torch.manual_seed(1)
    a = build_model("DSSN", 5, mode).state_dict()
    torch.manual_seed(1)
    b = DSSN(5, mode=mode).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_declared_network_builds_and_runs():
    for name, net in MODELS.items():
        model = build_model(name, 4).eval()
        x = [torch.randint(0, 256, (1, 3, net.size, net.size), dtype=torch.uint8) for _ in net.modes]
        assert model(*x).shape == (1, 4), name
        assert net.takes(len(net.modes)) and net.help, name
        assert (net.fusion in net.fusions) if net.fusions else net.fusion is None, name


def test_dssn_rejects_unknown_mode():
    with pytest.raises(ValueError, match="add, mul, cat"):
        DSSN(5, mode="max")


def test_load_pretrained_port_and_alexnet_formats(tmp_path):
    torch.manual_seed(0)
    w = {"0.weight": torch.randn(96, 3, 11, 11), "0.bias": torch.randn(96),
         "4.weight": torch.randn(256, 48, 5, 5), "4.bias": torch.randn(256)}
    torch.save(w, tmp_path / "partial.pt")
    m = load_pretrained(DSSN(5), tmp_path / "partial.pt")
    for t in m.trunks:   # both streams start from the same weights
        assert torch.equal(t.conv1.weight, w["0.weight"]) and torch.equal(t.conv2.bias, w["4.bias"])
    full = {f"layers.{k}": v for k, v in w.items()}
    full["layers.10.weight"] = torch.randn(384, 256, 3, 3)
    torch.save({"state_dict": full}, tmp_path / "alexnet.pth")
    assert torch.equal(load_pretrained(SSSN(5), tmp_path / "alexnet.pth").trunks[0].conv1.weight,
                       w["0.weight"])


def test_load_pretrained_wrong_shapes_one_clear_line(tmp_path):
    # torchvision's AlexNet conv1 is 64@11x11: it must not fit
    torch.save({"features.0.weight": torch.randn(64, 3, 11, 11), "features.0.bias": torch.randn(64)},
               tmp_path / "tv.pth")
    with pytest.raises(ValueError) as e:
        load_pretrained(SSSN(5), tmp_path / "tv.pth")
    msg = str(e.value)
    assert "\n" not in msg and "(96, 3, 11, 11)" in msg and "(64, 3, 11, 11)" in msg and "tv.pth" in msg
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt: cannot read"):
        load_pretrained(SSSN(5), tmp_path / "junk.pt")


def test_lrn_backward_is_the_gradient_of_the_formula():
    torch.manual_seed(0)
    a = (torch.randn(2, 8, 3, 3, dtype=torch.float64) * 30).requires_grad_()
    lrn = LRN(8).double()
    assert torch.autograd.gradcheck(lrn, (a,))
    g = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    ours, = torch.autograd.grad(lrn(a), a, g)
    ref, = torch.autograd.grad(lrn_reference(a), a, g)
    assert torch.allclose(ours, ref, rtol=1e-10)


def test_fast_dropout_is_dropout_half():
    from network import Dropout
    torch.manual_seed(0)
    d = Dropout(0.5)
    x = torch.ones(60, 57_600)
    y = d(x)
    assert set(y.unique().tolist()) == {0.0, 2.0}                 # kept values scaled by 1/(1-p)
    assert abs((y == 0).float().mean().item() - 0.5) < 0.002      # half dropped
    # neighbouring features are independent (the 8 bits of one byte must not agree)
    z = (y == 0).float().flatten()
    assert abs(torch.corrcoef(torch.stack([z[:-1], z[1:]]))[0, 1].item()) < 0.01
    assert torch.equal(d.eval()(x), x)


# --- the original grouped ImageNet AlexNet in the four formats it is published in -----------------

def alexnet_convs(seed=0):
    """One random set of conv1/conv2 weights, as torch (OIHW, cross-correlation) float32 arrays."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).numpy()
    return {"conv1": (r(96, 3, 11, 11), r(96)), "conv2": (r(256, 48, 5, 5), r(256))}


def write_state_dict(path, convs):
    state = {"features.0.weight": convs["conv1"][0], "features.0.bias": convs["conv1"][1],
             "features.4.weight": convs["conv2"][0], "features.4.bias": convs["conv2"][1],
             "classifier.1.weight": np.zeros((10, 9216), np.float32)}
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in state.items()}}, path)


def write_bvlc_npy(path, convs, bytes_keys=False):
    """bvlc_alexnet.npy: a pickled dict layer -> [weight, bias], kernels HWIO."""
    hwio = lambda w: w.transpose(2, 3, 1, 0)
    layers = {"conv1": [hwio(convs["conv1"][0]), convs["conv1"][1]],
              "conv2": [hwio(convs["conv2"][0]), convs["conv2"][1]],
              "conv3": [np.zeros((3, 3, 256, 384), np.float32), np.zeros(384, np.float32)],
              "fc8": [np.zeros((4096, 1000), np.float32), np.zeros(1000, np.float32)]}
    if bytes_keys:   # as np.load(..., encoding="bytes") gives the Python 2 file's keys
        layers = {k.encode(): v for k, v in layers.items()}
    np.save(path, layers, allow_pickle=True)


def write_onnx(path, convs):
    """bvlcalexnet-*.onnx as the model zoo lays it out: Conv nodes whose W, B are initializers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(a, n) for n, a in
             [("conv1_w_0", convs["conv1"][0]), ("conv1_b_0", convs["conv1"][1]),
              ("conv2_w_0", convs["conv2"][0]), ("conv2_b_0", convs["conv2"][1]),
              ("fc8_w_0", np.zeros((1000, 4096), np.float32))]]
    nodes = [helper.make_node("Conv", ["data_0", "conv1_w_0", "conv1_b_0"], ["conv1_1"],
                              kernel_shape=[11, 11],
                              strides=[4, 4]),
             helper.make_node("Relu", ["conv1_1"], ["conv1_2"]),
             helper.make_node("MaxPool", ["conv1_2"], ["pool1_1"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("Conv", ["pool1_1", "conv2_w_0", "conv2_b_0"], ["conv2_1"], kernel_shape=[5, 5],
                              pads=[2, 2, 2, 2], group=2)]
    graph = helper.make_graph(nodes, "alexnet", [helper.make_tensor_value_info("data_0", TensorProto.FLOAT,
                                                                               [1, 3, 224, 224])],
                              [helper.make_tensor_value_info("conv2_1", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph), str(path))


def write_keras1_h5(path, convs, model_weights=False):
    """convnets-keras alexnet_weights.h5 as Keras 1 saves it (Theano layout: conv kernels flipped,
    conv2 split into conv_2_1 and conv_2_2), with layers without weights and extra layers."""
    import h5py
    flip = lambda w: w[:, :, ::-1, ::-1]
    w2, b2 = convs["conv2"]
    layers = [("input", []),
              ("conv_1", [("conv_1_W", flip(convs["conv1"][0])), ("conv_1_b", convs["conv1"][1])]),
              ("convpool_1", []), ("lambda_1", []),
              ("conv_2_1", [("conv_2_1_W", flip(w2[:128])), ("conv_2_1_b", b2[:128])]),
              ("conv_2_2", [("conv_2_2_W", flip(w2[128:])), ("conv_2_2_b", b2[128:])]),
              ("conv_3", [("conv_3_W", np.zeros((384, 256, 3, 3), np.float32)),
                          ("conv_3_b", np.zeros(384, np.float32))]),
              ("dense_3", [("dense_3_W", np.zeros((4096, 1000), np.float32)),
                           ("dense_3_b", np.zeros(1000, np.float32))])]
    with h5py.File(path, "w") as f:
        g = f.create_group("model_weights") if model_weights else f
        g.attrs["layer_names"] = [n.encode() for n, _ in layers]
        for name, weights in layers:
            lg = g.create_group(name)
            lg.attrs["weight_names"] = np.array([w.encode() for w, _ in weights], dtype="S")
            for w, a in weights:
                lg.create_dataset(w, data=a)


def test_every_weight_format_loads_the_same_tensors(tmp_path):
    from network import read_pretrained, weights_format
    convs = alexnet_convs()
    files = {"pytorch": tmp_path / "alexnet.pth", "npy": tmp_path / "bvlc_alexnet.npy",
             "npy-bytes": tmp_path / "bvlc_alexnet_py2.npy", "onnx": tmp_path / "bvlcalexnet-12.onnx",
             "keras1-h5": tmp_path / "alexnet_weights.h5", "keras1-h5-model": tmp_path / "model.h5"}
    write_state_dict(files["pytorch"], convs)
    write_bvlc_npy(files["npy"], convs)
    write_bvlc_npy(files["npy-bytes"], convs, bytes_keys=True)
    write_onnx(files["onnx"], convs)
    write_keras1_h5(files["keras1-h5"], convs)
    write_keras1_h5(files["keras1-h5-model"], convs, model_weights=True)
    for kind, path in files.items():
        assert weights_format(path) == kind.split("-model")[0].replace("npy-bytes", "npy")
        got = read_pretrained(path)
        assert set(got) == {"conv1", "conv2"}
        for name, (w, b) in convs.items():
            assert got[name][0].dtype == torch.float32 and got[name][0].is_contiguous()
            assert torch.equal(got[name][0], torch.from_numpy(w)), (kind, name)
            assert torch.equal(got[name][1], torch.from_numpy(b)), (kind, name)
    m = load_pretrained(DSSN(5), files["keras1-h5"])   # into both streams
    assert torch.equal(m.trunks[1].conv2.weight, torch.from_numpy(convs["conv2"][0]))


def test_weight_files_without_both_convolutions_one_line(tmp_path):
    from network import read_pretrained
    convs = alexnet_convs()
    convs_bad = {"conv1": convs["conv1"], "conv2": (convs["conv2"][0][:, :24], convs["conv2"][1])}
    write_bvlc_npy(tmp_path / "a.npy", convs_bad)
    write_keras1_h5(tmp_path / "a.h5", convs_bad)
    write_onnx(tmp_path / "a.onnx", convs_bad)
    for name, found in (("a.npy", "conv2 (5, 5, 24, 256)"), ("a.h5", "conv_2_1 (128, 24, 5, 5)"),
                        ("a.onnx", "conv2_w_0 (256, 24, 5, 5)")):
        with pytest.raises(ValueError) as e:
            read_pretrained(tmp_path / name)
        msg = str(e.value)
        assert "\n" not in msg and name in msg and "(256, 48, 5, 5)" in msg and found in msg, msg
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ValueError, match="plain.npy: a plain float64 array"):
        read_pretrained(tmp_path / "plain.npy")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_npy_pickle_that_would_run_code_is_refused(tmp_path):
    from network import read_pretrained
    marker = tmp_path / "pwned"
    np.save(tmp_path / "evil.npy", {"conv1": [_Evil(marker)]}, allow_pickle=True)
    with pytest.raises(ValueError) as e:
        read_pretrained(tmp_path / "evil.npy")
    msg = str(e.value)
    assert "\n" not in msg and "evil.npy" in msg and "refused" in msg and "system" in msg, msg
    assert not marker.exists()
    # (the same file through plain np.load would have run it: the test's pickle is real)
    np.load(tmp_path / "evil.npy", allow_pickle=True)
    assert marker.exists()


def test_keras_init_has_keras_2_2_4_he_normal_spread():
    # Keras 2.2.4 he_normal: a normal truncated at 2 std whose spread AFTER truncation is
    # sqrt(2 / fan_in) (VarianceScaling divides by 0.8796); a 1-D bias of n values has fan_in sqrt(n)
    want = lambda fan_in: np.sqrt(2.0 / fan_in)
    # the spread of a (5,) bias needs many draws: the classifier's shape of bias on a small Linear
    # (keras_he_normal_ looks only at the bias's own length), 2,000 draws
    torch.manual_seed(0)
    draws = []
    for _ in range(2000):
        lin = torch.nn.Linear(4, 5)
        keras_he_normal_(lin)
        draws.append(lin.bias.detach().numpy().copy())
    fc = np.concatenate(draws)
    assert abs(fc.std() - want(np.sqrt(5))) < 0.03, fc.std()      # 0.946 (0.832 without the correction)
    truncated_at = 2 * want(np.sqrt(5)) / 0.87962566103423978
    assert np.abs(fc).max() <= truncated_at and np.abs(fc).max() > 0.9 * truncated_at
    # the model itself: its conv biases have enough values to show their spread in one draw
    torch.manual_seed(0)
    m = DSSN(5)
    c1 = np.concatenate([t.conv1.bias.detach().numpy() for t in m.trunks])
    c2 = np.concatenate([t.conv2.bias.detach().numpy() for t in m.trunks])
    assert abs(c1.std() - want(np.sqrt(96))) < 0.04, c1.std()      # conv_1's (96,) bias: 0.452
    assert abs(c2.std() - want(np.sqrt(128))) < 0.03, c2.std()     # conv_2_1 / conv_2_2's (128,): 0.420
    assert m.fc.bias.abs().min() > 0 and m.fc.bias.abs().max() <= truncated_at   # drawn, not zero
    assert abs(m.fc.weight.std().item() - want(57_600)) < 2e-4
    assert abs(m.trunks[0].conv1.weight.std().item() - want(3 * 11 * 11)) < 2e-3
    assert abs(m.trunks[0].conv2.weight.std().item() - want(48 * 5 * 5)) < 2e-3
    assert abs(DSSN(5, mode="cat").fc.weight.std().item() - want(115_200)) < 2e-4
    # the port-style init of --recipe pytorch: zero biases, Glorot uniform classifier
    p = DSSN(5, init="pytorch")
    assert not p.fc.bias.any() and not p.trunks[1].conv2.bias.any()
    assert p.fc.weight.abs().max() <= np.sqrt(6 / (57_600 + 5))


def test_the_docs_example_network_runs_through_every_script(demo, tmp_path):
    # docs/experiments.md's first python block, pasted at the end of a copy of network.py and
    # nothing else edited, is trained, listed, benchmarked, run as variants and predicts
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "experiments.md")) as f:
        block = re.search(r"```python\n(.*?)```", f.read(), re.S)[1]
    name = re.search(r"^declare\((\w+)", block, re.M)[1]
    assert name not in MODELS
    code = tmp_path / "code"
    code.mkdir()
    for f in os.listdir(root):
        if f.endswith(".py"):
            shutil.copy(os.path.join(root, f), code)
    with open(code / "network.py", "a") as f:
        f.write("\n\n" + block)
    sheet = builders.subset_sheet(demo, ["01", "02"], tmp_path / "sheet.csv")
    data = ["--path", sheet, "--img_root", demo["root"], "--cache_dir", demo["cache"], "--device", "cpu",
            "--epochs", "1", "--batch_size", "4"]
    run = lambda *argv: subprocess.run([sys.executable, *argv], cwd=code, capture_output=True, text=True)
    for argv in (["train.py", "--help"], ["train.py", "--model", name, *data, "--weight_save_path", "loso"],
                 ["variants.py", "--models", name, "--modes", "G", *data, "--out", "variants"],
                 ["bench.py", "--quick", "--models", name, "--device", "cpu", "--json", "bench.json"],
                 ["train.py", "--model", name, *data, "--final", "--weight_save_path", "final"]):
        p = run(*argv)
        assert p.returncode == 0, (argv, p.stderr[-2000:])
        if argv[1] == "--help":
            assert name in p.stdout
    summary = json.loads((code / "loso" / "summary.json").read_text())
    assert summary["config"]["model"] == name and summary["config"]["image_mode"] == ["F", "G"]
    assert (code / "variants" / f"{name}_G" / "summary.json").is_file()
    bench = json.loads((code / "bench.json").read_text())
    assert bench["models"][name]["fp32"]["train_gflops"] > 0
    row = dl.read_samples(sheet, demo["root"], "CASME").table.iloc[0]
    p = run("predict.py", "--weights", "final/final.pt", "--onset", row["onset_path"], "--apex",
            row["apex_path"], "--device", "cpu", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["prediction"] in summary["config"]["classes"]


class PublishedSTSTNet(torch.nn.Module):
    """STSTNet as christy1206/STSTNet main.py writes it: three branches, each its own layers."""

    def __init__(self, classes=3):
        super().__init__()
        for k, n in enumerate((3, 5, 8), 1):
            setattr(self, f"conv{k}", torch.nn.Conv2d(3, n, 3, padding=2))
            setattr(self, f"bn{k}", torch.nn.BatchNorm2d(n))
        self.fc = torch.nn.Linear(400, classes)

    def forward(self, x):   # dropout left out: compared with ours in eval mode or with p = 0
        b = [F.max_pool2d(getattr(self, f"bn{k}")(F.relu(getattr(self, f"conv{k}")(x))), 3, 3, padding=1)
             for k in (1, 2, 3)]
        return self.fc(F.avg_pool2d(torch.cat(b, 1), 2).flatten(1))


def test_ststnet_is_the_published_architecture():
    m = build_model("STSTNet", 3)
    # conv 3x3 of 3, 5, 8 filters (84 + 140 + 224), BatchNorm (32), linear 400 -> 3 (1,203)
    assert count_parameters(m) == 1_683 == count_parameters(PublishedSTSTNet())
    torch.manual_seed(0)
    ref = PublishedSTSTNet()
    with torch.no_grad():   # BatchNorm's affine and running statistics away from their defaults
        for k in (1, 2, 3):
            bn = getattr(ref, f"bn{k}")
            for t in (bn.weight, bn.bias, bn.running_mean):
                t.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    m.load_state_dict(ref.state_dict())   # the published names load
    x = torch.randint(0, 256, (6, 3, 28, 28), dtype=torch.uint8)
    assert torch.allclose(m.eval()(x), ref.eval()(x.float()), atol=1e-5)
    # training mode (batch statistics) and its gradients: the same function, dropout aside
    m.dropout.p = 0.0
    a, b = m.train()(x), ref.train()(x.float())
    assert torch.allclose(a, b, atol=1e-4)
    a.square().sum().backward()
    b.square().sum().backward()
    assert torch.allclose(m.fc.weight.grad, ref.fc.weight.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(m.conv.weight.grad[3:8], ref.conv2.weight.grad, rtol=1e-3, atol=1e-3)
    net = MODELS["STSTNet"]
    assert (net.modes, net.size, net.pretrained) == (("O",), 28, False)
    assert net.defaults == dict(recipe="plain", batch_size=256, learning_rate=5e-5, epochs=800)


# CUDA autocast's float32 list (torch docs, "Automatic Mixed Precision package - torch.amp", CUDA Ops
# that can autocast to float32). CPU autocast runs most of them in bf16, pow among them, so a
# model that trains under CPU autocast can still fail under CUDA's.
CUDA_FP32_OPS = {
    "__pow__", "__rdiv__", "__rpow__", "__rtruediv__", "acos", "asin", "binary_cross_entropy_with_logits",
    "cosh", "cosine_embedding_loss", "cdist", "cosine_similarity", "cross_entropy", "cumprod", "cumsum",
    "dist", "erfinv", "exp", "expm1", "group_norm", "hinge_embedding_loss", "kl_div", "l1_loss",
    "layer_norm", "log", "log_softmax", "log10", "log1p", "log2", "margin_ranking_loss", "mse_loss",
    "multilabel_margin_loss", "multi_margin_loss", "nll_loss", "norm", "normalize", "pdist",
    "poisson_nll_loss", "pow", "prod", "reciprocal", "rsqrt", "sinh", "smooth_l1_loss", "soft_margin_loss",
    "softmax", "softmin", "softplus", "sum", "renorm", "tan", "triplet_margin_loss"}


class CudaAutocastRules(torch.overrides.TorchFunctionMode):
    """Under CPU autocast, runs the ops of CUDA autocast's float32 list in float32 as CUDA does
    (floating tensor arguments cast to float32, float64 left alone): CUDA's dtypes on a CPU.
    `seen` names the ops it cast."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in CUDA_FP32_OPS and torch.is_autocast_enabled("cpu"):
            self.seen.add(name)
            up = lambda a: a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() \
                and a.dtype != torch.float64 else a
            args, kwargs = tuple(up(a) for a in args), {k: up(v) for k, v in kwargs.items()}
        return func(*args, **kwargs)


@pytest.fixture(scope="module")
def cpu_bf16_autocast():
    """Skips where CPU bf16 autocast cannot run at all (it runs, emulated, on CPUs without native bf16)."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            F.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1)).sum().item()
    except RuntimeError as e:
        pytest.skip(f"CPU bf16 autocast does not run here: {e}")


@pytest.mark.parametrize("model, mode", [(m, f) for m, d in MODELS.items() for f in d.fusions or (None,)])
def test_a_bf16_training_step_under_cuda_autocast_rules(model, mode, cpu_bf16_autocast):
    # train.py's own step (train_fold: forward, loss, backward, optimizer step, then scoring) of every
    # model and fusion, with both recipes' losses, as CUDA autocast types each op
    import argparse
    import train
    from torch.optim.optimizer import register_optimizer_step_post_hook
    g = torch.Generator().manual_seed(0)
    net = MODELS[model]
    streams = [torch.randint(0, 256, (3, net.size, net.size, 3), dtype=torch.uint8, generator=g)
               for _ in net.modes]
    has_lrn = any(isinstance(m, LRN) for m in build_model(model, 5, mode).modules())
    y = torch.tensor([0, 3, 1])
    steps = []

    def check(optimizer, *_):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        steps.append(all(gr.dtype == torch.float32 and torch.isfinite(gr).all() for gr in grads))
    for recipe, loss_ops in (("keras", {"softmax", "log"}), ("pytorch", {"cross_entropy"}),
                             ("plain", {"cross_entropy"})):
        args = argparse.Namespace(model=model, num_classes=5, combination_mode=mode, recipe=recipe,
                                  learning_rate=1e-3, batch_size=2, epochs=1, device="cpu", amp="bf16")
        rules, hook = CudaAutocastRules(), register_optimizer_step_post_hook(check)
        try:
            with rules:
                probs, losses, _ = train.train_fold(streams, y, np.arange(2), np.arange(2, 3), args, seed=0)
        finally:
            hook.remove()
        want = loss_ops | ({"pow"} if has_lrn else set())   # the LRN's pow, the loss: typed as on CUDA
        assert want <= rules.seen, rules.seen
        assert np.isfinite(losses).all() and np.allclose(probs.sum(1), 1, atol=1e-3)
    assert steps == [True] * 3   # one step a recipe, every gradient fp32 and finite


def test_every_model_is_one_train_py_takes():
    import train
    choices = next(a.choices for a in train.parser()._actions if a.dest == "model")
    assert list(choices) == list(network.MODELS)
    for name, modes in network.MODELS.items():
        assert type(network.build_model(name, 5)).__name__ == name
