import pytest
import torch
import torch.nn.functional as F

from network import DSSN, LRN, SSSN, Trunk, count_parameters, load_pretrained, IMAGENET_MEAN


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
    with pytest.raises(ValueError, match="two streams"):
        m(a)


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
    assert torch.equal(load_pretrained(SSSN(5), tmp_path / "alexnet.pth").trunks[0].conv1.weight, w["0.weight"])


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
