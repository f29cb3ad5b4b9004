"""
SSSN and DSSN: single- and dual-stream shallow networks (Khor et al., ICIP 2019).

Follows the authors' Keras code (github IcedDoggie/DSSN-MER, models.py / networks.py):
each stream is AlexNet conv1 + conv2 with ImageNet-style weights, nothing frozen, and a
linear classifier on the 256x15x15 maps.

    from network import SSSN, DSSN
    model = DSSN(num_classes=5, mode="mul")       # mul is the authors' fusion
    logits = model(x1, x2)                         # x*: (N, 3, 227, 227), pixels in 0..255

The model returns logits; the authors' final softmax is folded into the loss. `init="keras"` (the
default) initialises as the authors declared every layer; `init="pytorch"` is the port-style init
(zero biases, Glorot classifier) that train.py --recipe pytorch keeps.
This file stands alone (torch, numpy and utils' error class; onnx and h5py only to read those
weight files).
"""
import codecs
import dataclasses
import inspect
import math
import pickle

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import utils

# ImageNet RGB mean the authors subtract from 0..255 pixels before dividing by 255.
IMAGENET_MEAN = (123.68, 116.779, 103.939)
CONV1_SHAPE = (96, 3, 11, 11)
CONV2_SHAPE = (256, 48, 5, 5)
FEATURES = 256 * 15 * 15  # 57,600 per stream


class WeightsError(utils.UserError, ValueError):
    """A weights file that cannot be used: one line naming the file, what was expected and found."""


class LRN(nn.Module):
    """Cross-channel local response normalisation as in the authors' Keras layer
    (convnets-keras `crosschannelnormalization`, the AlexNet paper's formula):

        b_c = a_c / (k + alpha * sum_{|c'-c| <= n//2} a_c'^2) ** beta

    alpha is NOT divided by n (torch's nn.LocalResponseNorm divides it, a 5x weaker term).
    The channel window sum is one banded 1x1 convolution (a GEMM), about twice as fast on
    CPU as nn.LocalResponseNorm's avg_pool3d.
    """

    def __init__(self, channels, n=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        self.alpha, self.beta, self.k = alpha, beta, k
        idx = torch.arange(channels)
        band = ((idx[:, None] - idx[None, :]).abs() <= n // 2).float()
        self.register_buffer("band", band[:, :, None, None], persistent=False)

    def forward(self, x):
        return _LRN.apply(x, self.band.to(x.dtype), self.k, self.alpha, self.beta)


class _LRN(torch.autograd.Function):
    """LRN with a hand-written backward that reuses the forward's d and d^-beta instead of
    differentiating pow again (about 8 % of a CPU training step). With d = k + alpha*band(x^2):
    dL/dx = g d^-beta - 2 alpha beta x band(g x d^-beta / d)  (the band is symmetric)."""

    @staticmethod
    def forward(ctx, x, band, k, alpha, beta):
        # d and d^-beta in x's dtype whatever autocast does: CUDA autocast runs pow in fp32 (CPU
        # autocast keeps it bf16; torch docs, torch.amp, CUDA ops that can autocast to float32), which
        # would make the output, and so the gradient g, fp32 while the band of the backward's conv2d
        # stays bf16. Both casts are no-ops without autocast and under CPU's.
        d = F.conv2d(x * x, band).to(x.dtype).mul_(alpha).add_(k)
        r = d.pow(-beta).to(x.dtype)
        ctx.save_for_backward(x, band, d, r)
        ctx.alpha, ctx.beta = alpha, beta
        return x * r

    @staticmethod
    def backward(ctx, g):
        x, band, d, r = ctx.saved_tensors
        gr = g * r
        s = F.conv2d(gr * x / d, band)
        return gr - (2 * ctx.alpha * ctx.beta) * x * s, None, None, None, None


class Dropout(nn.Dropout):
    """nn.Dropout, but on CPU with p=0.5 the mask comes from random bits (8 per random byte):
    torch's bernoulli_ is slow on CPU at this size (60 x 57,600 features a batch; docs/performance.md).
    Same distribution."""

    def forward(self, x):
        if not (self.training and self.p == 0.5 and x.device.type == "cpu"):
            return super().forward(x)
        n = x.numel()
        byte = torch.randint(0, 256, ((n + 7) // 8, 1), dtype=torch.uint8)
        bits = byte.bitwise_right_shift(torch.arange(8, dtype=torch.uint8)).bitwise_and_(1)
        return x * bits.view(-1)[:n].view(x.shape).to(x.dtype).mul_(2.0)


class Trunk(nn.Module):
    """AlexNet conv1 + conv2 as in the authors' code: 3x227x227 -> 256x15x15."""

    def __init__(self, init="keras"):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4)             # 55x55, no padding
        self.lrn1 = LRN(96)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)  # 27x27, 2 groups of 128
        self.lrn2 = LRN(256)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        INITS[init](self)

    def forward(self, x):
        # The authors' input normalisation (x - mean) / 255 is folded into conv1 (no padding,
        # so it is exact): one pass less over the largest tensor of the step.
        w = self.conv1.weight / 255.0
        b = self.conv1.bias - (self.conv1.weight.sum((2, 3)) @ self.mean.view(3)) / 255.0
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) \
            else w.dtype
        x = F.conv2d(x.to(dtype), w, b, stride=4)
        # ReLU after the pool equals ReLU before it (max commutes with a monotone map) and
        # touches 4x fewer values.
        x = self.lrn1(F.relu(F.max_pool2d(x, 3, 2)))               # 55x55 -> 27x27
        x = self.lrn2(F.relu(F.max_pool2d(self.conv2(x), 3, 2)))   # 27x27 -> 13x13
        return F.pad(x, (1, 1, 1, 1))                               # 15x15


def he_normal_(module):
    """The port-style init (train.py --recipe pytorch): a truncated normal of std sqrt(2/fan_in)
    before truncation for convolutions, Glorot uniform for linear layers, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            std = math.sqrt(2.0 / fan_in)
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


# scipy.stats.truncnorm.std(a=-2, b=2): Keras 2.2.4's VarianceScaling divides its stddev by it, so
# the truncated draws have std sqrt(scale / fan) (keras/initializers.py of the 2.2.4 wheel).
TRUNC_STD = 0.87962566103423978


def keras_he_normal_(module):
    """The authors' layers: `kernel_initializer='he_normal', bias_initializer='he_normal'` on every
    conv and on the classifier (DSSN-MER models.py / networks.py), as Keras 2.2.4 draws them
    (keras/initializers.py: VarianceScaling(2, 'fan_in', 'normal'), _compute_fans): a truncated
    normal at 2 std with std sqrt(2 / max(1, fan_in)) after truncation; a kernel's fan_in is
    in_channels x kh x kw (a Dense's inputs), a 1-D bias of n values has fan_in sqrt(n). conv2 is
    two Conv2D(128) in their code (conv_2_1, conv_2_2): each group's bias has n = 128."""
    def draw(p, fan_in):
        std = math.sqrt(2.0 / max(1.0, fan_in)) / TRUNC_STD
        nn.init.trunc_normal_(p, std=std, a=-2 * std, b=2 * std)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                draw(m.weight, m.weight[0].numel())
                draw(m.bias, math.sqrt(m.bias.numel() / getattr(m, "groups", 1)))


# torch: each layer's own default initialisation, untouched (recipe plain, STSTNet's script)
INITS = {"keras": keras_he_normal_, "pytorch": he_normal_, "torch": lambda module: None}


class SSSN(nn.Module):
    """Single-stream shallow network: trunk -> flatten -> dropout 0.5 -> linear."""

    def __init__(self, num_classes=5, dropout=0.5, init="keras"):
        super().__init__()
        self.trunks = nn.ModuleList([Trunk(init)])
        self.dropout = Dropout(dropout)
        self.fc = nn.Linear(FEATURES, num_classes)
        INITS[init](self.fc)

    def features(self, *streams):
        return self.trunks[0](streams[0])

    def forward(self, *streams):
        return self.fc(self.dropout(self.features(*streams).flatten(1)))


class DSSN(SSSN):
    """Multi-stream shallow network: one independent trunk per stream (no weight sharing), merged on
    the 256x15x15 maps by `mode`: 'mul' (the authors' choice), 'add' or 'cat' (streams x 57,600
    features). Two streams is the paper's DSSN; three (F G S) is the same network with a trunk more."""

    MODES = ("add", "mul", "cat")

    def __init__(self, num_classes=5, mode="mul", dropout=0.5, init="keras", streams=2):
        if mode not in self.MODES:
            raise ValueError(f"DSSN mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        super().__init__(num_classes, dropout, init)
        self.mode = mode
        for _ in range(streams - 1):
            self.trunks.append(Trunk(init))
        if mode == "cat":
            self.fc = nn.Linear(streams * FEATURES, num_classes)
            INITS[init](self.fc)

    def features(self, *streams):
        if len(streams) != len(self.trunks):
            raise ValueError(f"this DSSN takes {len(self.trunks)} streams, got {len(streams)}")
        maps = [t(s) for t, s in zip(self.trunks, streams)]
        if self.mode == "cat":
            return torch.cat(maps, 1)
        out = maps[0]
        for m in maps[1:]:
            out = out * m if self.mode == "mul" else out + m
        return out


class STSTNet(nn.Module):
    """STSTNet (Liong et al., FG 2019): the field's shallow baseline on the 28x28 (u, v, strain) image.
    As christy1206/STSTNet main.py declares it: three 3x3 convolution branches of 3, 5 and 8 filters
    (padding 2), each ReLU -> BatchNorm -> max-pool 3/3 (padding 1) -> dropout 0.5, concatenated,
    average-pooled 2/2, then linear 400 -> classes. Its input is the image as its script feeds it:
    cv2.imread's BGR channels (strain, v, u), pixels 0..255 unscaled (preprocess.stream mode O).

    The three branches see the same input and every later step is per channel, so they run as one
    convolution of 3 + 5 + 8 = 16 filters and one BatchNorm of 16 channels, in the branches' order:
    the same function (BatchNorm's statistics are per channel), about 1.6x faster on a CPU. The
    published state dicts (conv1..conv3, bn1..bn3: STSTNet_Weights/*.pth) load into it."""

    BRANCHES = (3, 5, 8)

    def __init__(self, num_classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, sum(self.BRANCHES), 3, padding=2)
        self.bn = nn.BatchNorm2d(sum(self.BRANCHES))
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(5 * 5 * sum(self.BRANCHES), num_classes)
        self._register_load_state_dict_pre_hook(self._published_names)

    @staticmethod
    def _published_names(state, prefix, *args):
        """conv1..conv3 / bn1..bn3 of the published script, concatenated in the branches' order."""
        n = len(STSTNet.BRANCHES)
        for layer, keys in (("conv", ("weight", "bias")),
                            ("bn", ("weight", "bias", "running_mean", "running_var"))):
            for k in keys:
                parts = [f"{prefix}{layer}{b}.{k}" for b in range(1, n + 1)]
                if all(p in state for p in parts):
                    state[f"{prefix}{layer}.{k}"] = torch.cat([state.pop(p) for p in parts])
        counts = [state.pop(f"{prefix}bn{b}.num_batches_tracked", None) for b in range(1, n + 1)]
        if counts[0] is not None:
            state[f"{prefix}bn.num_batches_tracked"] = counts[0]

    def forward(self, x):
        x = F.max_pool2d(self.bn(F.relu(self.conv(x.float()))), 3, 3, padding=1)   # 30x30 -> 10x10
        return self.fc(F.avg_pool2d(self.dropout(x), 2).flatten(1))                 # 5x5x16 = 400


# ---------------------------------------------------------------------------------------------
# The networks the scripts know, each declared once: train.py (--model, the default --image_mode,
# --combination_mode, the run folder's name and identity), variants.py, bench.py and predict.py
# read all they need to know about a network from its declaration. A new network is a class and a
# declare() call (docs/experiments.md).

@dataclasses.dataclass(frozen=True)
class Declaration:
    name: str
    cls: type
    modes: tuple        # default --image_mode: one (u, v, X) stream per mode
    streams: tuple      # (fewest, most) streams it takes; most None: any number
    fusions: tuple      # --combination_mode values it takes (() for none); `fusion` the default
    fusion: str
    pretrained: bool    # has AlexNet conv1/conv2 trunks (model.trunks) that --pretrained fills
    size: int           # side of each stream's square input image
    cam: object         # model -> the module of each stream whose maps predict.py --cam draws, or None
    defaults: dict      # train.py settings its own publication trained with (else the authors' DSSN's)
    help: str

    @property
    def recipe(self):
        """The train.py --recipe it trains with unless given: its publication's, else the authors'."""
        return self.defaults.get("recipe", "keras")

    def takes(self, n):
        lo, hi = self.streams
        return lo <= n and (hi is None or n <= hi)

    def streams_text(self):
        lo, hi = self.streams
        return str(lo) if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"


MODELS = {}


def declare(cls, modes, streams=None, fusions=(), fusion=None, pretrained=False, size=227, cam=None,
            help=None, **defaults):
    """Make `cls` a network the scripts know, under its class name. cls(num_classes, ...) builds it;
    it is also given `streams=` (the number of streams), `fusion=` and `init=` (an INITS key: the
    recipe's, train.py --recipe) where its __init__ takes them. Its forward takes one (N, 3, H, W)
    uint8 tensor of 0..255 pixels per stream and returns logits. `defaults`: train.py settings
    (recipe, batch_size, learning_rate, epochs) that this network trains with unless given."""
    modes = tuple(modes)
    MODELS[cls.__name__] = Declaration(
        cls.__name__, cls, modes, tuple(streams or (len(modes), len(modes))), tuple(fusions),
        fusion or (fusions[0] if fusions else None), pretrained, size, cam, dict(defaults),
        help or (cls.__doc__ or cls.__name__).strip().split("\n")[0])
    return cls


def trunk_conv2(model):
    # CAMs on each trunk's last convolution, at its 27x27 resolution (predict.run_model)
    return [t.conv2 for t in model.trunks]


declare(SSSN, modes=["G"], pretrained=True, cam=trunk_conv2,
        help="one shallow AlexNet conv1 + conv2 trunk and a linear classifier")
declare(DSSN, modes=["F", "G"], streams=(2, None), fusions=DSSN.MODES, fusion="mul", pretrained=True,
        cam=trunk_conv2,
        help="one such trunk per stream (two: the paper's), fused by --combination_mode")
# STSTNet's published training (main.py): torch's Adam at lr 5e-5, batch 256, 800 epochs, plain
# cross-entropy, torch's default initialisation, batches class by class (recipe plain), last epoch
declare(STSTNet, modes=["O"], size=28, recipe="plain", batch_size=256, learning_rate=5e-5, epochs=800,
        help="Liong et al. 2019, on its 28x28 (u, v, strain) image")


def build_model(name, num_classes, fusion=None, init="keras", streams=None):
    """A fresh network declared as `name`, with `streams` streams (default: as many as its default
    modes) fused by `fusion` (default: its declared one)."""
    if name not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {name!r}")
    d = MODELS[name]
    takes = inspect.signature(d.cls).parameters
    kw = dict(streams=streams or len(d.modes), fusion=fusion or d.fusion, init=init)
    if "mode" in takes:   # DSSN's own name for its fusion (the seed's DSSN(mode=...))
        kw["mode"] = kw["fusion"]
    return d.cls(num_classes, **{k: v for k, v in kw.items() if k in takes})


def _find_convs(state):
    """conv1/conv2 (weight, bias) pairs found by shape, whatever the key prefix
    (`0.`/`4.` in the port's partial.pt, `layers.0.`/`layers.4.`, `features.*`, ...)."""
    found = {}
    for key, w in state.items():
        if not (key.endswith("weight") and torch.is_tensor(w)):
            continue
        bias = state.get(key[: -len("weight")] + "bias")
        for name, shape in (("conv1", CONV1_SHAPE), ("conv2", CONV2_SHAPE)):
            if tuple(w.shape) == shape and name not in found and bias is not None \
                    and tuple(bias.shape) == (shape[0],):
                found[name] = (w, bias)
    return found


# The original grouped ImageNet AlexNet (Caffe's bvlc_alexnet) as it is published in four
# formats. Each reader returns ({"conv1": (w, b), "conv2": (w, b)} as found, in torch's OIHW
# cross-correlation layout, and a list of what the file holds, for the error message).
FORMATS = {"pytorch": "PyTorch state dict", "npy": "bvlc_alexnet.npy (Caffe weights for TensorFlow, HWIO)",
           "onnx": "ONNX model (bvlcalexnet-*.onnx)",
           "keras1-h5": "Keras 1 HDF5 (convnets-keras alexnet_weights.h5)"}


def weights_format(path):
    """Which of FORMATS a file is, from its first bytes (ONNX, plain protobuf, by suffix too)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras1-h5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    # ModelProto's first field is ir_version (field 1, varint: tag byte 0x08); torch files start
    # with PK (zip) or 0x80 (legacy pickle)
    if str(path).lower().endswith(".onnx") or head[:1] == b"\x08":
        return "onnx"
    return "pytorch"


def _read_torch(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    return _find_convs(state), [f"{k} {tuple(v.shape)}" for k, v in state.items() if torch.is_tensor(v)]


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays in plain containers and nothing else (the spirit of
    torch.load(weights_only=True)): a weight file can never run code."""
    _core = getattr(np, "_core", None) or np.core
    SAFE = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): _core.multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _core.multiarray._reconstruct,
            ("numpy.core.multiarray", "scalar"): _core.multiarray.scalar,
            ("numpy._core.multiarray", "scalar"): _core.multiarray.scalar,
            # bytes in a Python 3 protocol-2 pickle; a pure function (torch's weights_only allows it too)
            ("_codecs", "encode"): codecs.encode}

    def find_class(self, module, name):
        if (module, name) not in self.SAFE:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays are allowed)")
        return self.SAFE[module, name]


def _read_npy(path):
    # np.load(allow_pickle=True) would unpickle anything: read the header with numpy, the
    # pickle with the restricted unpickler; latin1 reads the Python 2 file's array buffers
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
        if not dtype.hasobject:
            raise WeightsError(f"{path}: a plain {dtype} array of shape {shape}, expected a pickled dict "
                             f"layer -> [weight, bias] (bvlc_alexnet.npy)")
        try:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as e:
            raise WeightsError(f"{path}: {e}") from None
    layers = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    if not isinstance(layers, dict):
        raise WeightsError(f"{path}: expected a dict layer -> [weight, bias], found {type(layers).__name__}")
    found, seen = {}, []
    for key, params in layers.items():
        key = key.decode("latin1") if isinstance(key, bytes) else str(key)   # Python 2 files: bytes
        arrays = [p for p in params if isinstance(p, np.ndarray)] if isinstance(params, (list, tuple)) else []
        seen.append(f"{key} " + " ".join(str(a.shape) for a in arrays))
        if key in ("conv1", "conv2") and len(arrays) == 2:
            w, b = arrays
            shape = CONV1_SHAPE if key == "conv1" else CONV2_SHAPE
            if w.shape == shape[2:] + shape[1::-1] and b.shape == shape[:1]:   # HWIO
                found[key] = (w.transpose(3, 2, 0, 1), b)
    return found, seen


def _read_onnx(path):
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(str(path)).graph
    init = {t.name: t for t in graph.initializer}
    found = {}
    for node in graph.node:   # (X, W, B) inputs of each Conv node
        if node.op_type != "Conv" or len(node.input) < 3 or not {node.input[1], node.input[2]} <= init.keys():
            continue
        w, b = (numpy_helper.to_array(init[i]) for i in node.input[1:3])
        for name, shape in (("conv1", CONV1_SHAPE), ("conv2", CONV2_SHAPE)):
            if w.shape == shape and b.shape == shape[:1] and name not in found:
                found[name] = (w, b)
    return found, [f"{t.name} {tuple(t.dims)}" for t in graph.initializer]


def _read_keras1_h5(path):
    # Keras 1 save_weights / save layout: attrs layer_names (on the root group, or on
    # model_weights for a whole saved model), each layer group's attr weight_names
    # (empty for layers without weights) naming its datasets, e.g. conv_1/conv_1_W, conv_1/conv_1_b.
    import h5py
    names = lambda g, attr: [n.decode("utf8") if isinstance(n, bytes) else str(n)
                             for n in g.attrs.get(attr, [])]
    layers = {}
    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        for layer in names(g, "layer_names"):
            layers[layer] = [np.asarray(g[layer][w]) for w in names(g[layer], "weight_names")]
    seen = [f"{k} " + " ".join(str(a.shape) for a in v) for k, v in layers.items() if v]

    def get(name, shape):
        wb = layers.get(name, [])
        ok = len(wb) == 2 and wb[0].shape == shape and wb[1].shape == shape[:1]
        return wb if ok else None

    # Theano's conv2d is a true convolution: the kernels are stored flipped in both spatial axes
    # relative to Caffe's (and torch's) cross-correlation; flip them back.
    flip = lambda w: w[:, :, ::-1, ::-1]
    found = {}
    c1 = get("conv_1", CONV1_SHAPE)
    if c1:
        found["conv1"] = (flip(c1[0]), c1[1])
    half = (CONV2_SHAPE[0] // 2,) + CONV2_SHAPE[1:]
    c21, c22 = get("conv_2_1", half), get("conv_2_2", half)   # conv2's two groups, in this order
    if c21 and c22:
        found["conv2"] = (flip(np.concatenate([c21[0], c22[0]])), np.concatenate([c21[1], c22[1]]))
    return found, seen


READERS = {"pytorch": _read_torch, "npy": _read_npy, "onnx": _read_onnx, "keras1-h5": _read_keras1_h5}


def read_pretrained(path):
    """AlexNet conv1/conv2 (weight, bias) from a weights file in any of FORMATS, as
    {"conv1": (w, b), "conv2": (w, b)}: float32 torch tensors, OIHW, cross-correlation as torch
    uses it. The input-channel order is kept as stored (Caffe's conv1 saw BGR images).
    Raises WeightsError with one line naming what was expected and what the file holds."""
    try:
        fmt = weights_format(path)
        found, seen = READERS[fmt](path)
    except Exception as e:  # unreadable / not a file of that format
        if isinstance(e, WeightsError):   # ours, already one line
            raise
        raise WeightsError(f"{path}: cannot read weights file "
                           f"({type(e).__name__}: {e})".replace("\n", " ")) from None
    if len(found) < 2:
        raise WeightsError(f"{path}: expected conv1 weight {CONV1_SHAPE} and conv2 weight {CONV2_SHAPE} "
                           f"(each with a bias) in this {FORMATS[fmt]}, "
                           f"found: {', '.join(seen) or 'no weights'}")
    as_tensor = lambda a: a.detach().float().contiguous() if torch.is_tensor(a) else \
        torch.from_numpy(np.array(a, dtype=np.float32, order="C"))   # a writable copy
    return {k: tuple(as_tensor(a) for a in found[k]) for k in ("conv1", "conv2")}


def load_pretrained(model, weights):
    """Copy conv1/conv2 into every trunk of `model`; `weights` is a file or read_pretrained's
    result (read once, used for every LOSO fold)."""
    found = weights if isinstance(weights, dict) else read_pretrained(weights)
    with torch.no_grad():
        for trunk in model.trunks:
            for name in ("conv1", "conv2"):
                conv = getattr(trunk, name)
                conv.weight.copy_(found[name][0])
                conv.bias.copy_(found[name][1])
    return model


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
