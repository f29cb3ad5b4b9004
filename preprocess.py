"""
Pure functions on frames: face alignment, TV-L1 flow and the DSSN input images.

    import preprocess as pp
    onset, apex = pp.read_image("sub01/EP02_01f/img46.jpg"), pp.read_image(".../img59.jpg")
    feats = pp.features(onset, apex, face="dlib")   # dict of 227x227 uint8 images

`features` returns u, v (horizontal / vertical flow onset -> apex), F (flow magnitude),
S (optical strain), G (grayscale apex) and the aligned onset / apex crops (RGB, for plots).
The authors' choices behind each step, and where this code departs from them: docs/fidelity.md.
"""
import functools
import importlib.util
import math
import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F

import utils

SIZE = 227
# The IPOL TV-L1 program's defaults, used by the authors (Micro-Expression-with-Deep-Learning,
# External-Tools/tvl1flow_3). OpenCV's only differing default is scaleStep 0.8 (IPOL zoom 0.5).
TVL1 = dict(tau=0.25, lambda_=0.15, theta=0.3, nscales=5, warps=5, epsilon=0.01, scaleStep=0.5)
IPOL_TVL1 = dict(tau=0.25, lambda_=0.15, theta=0.3, nscales=5, zoom=0.5, warps=5, epsilon=0.01, max_iter=300)
# "ipol": the IPOL program's TV-L1 (the authors'), re-implemented in torch below; "opencv":
# OpenCV's DualTVL1, which differs from it by 8-37 % of the mean flow on micro-movements.
FLOW_METHODS = ("ipol", "opencv")
# Authors' 8-bit encoding of flow and magnitude: x*16+128, clipped. Zero motion stays at 128
# and samples keep their relative scale.
FLOW_SCALE, FLOW_OFFSET = 16.0, 128.0
# Strain has no encoding in the authors' code we could read; it is non-negative and about
# 1/10 of the flow, so it gets zero at 0 and a larger fixed scale (documented in the README).
STRAIN_SCALE = 128.0
# Eye alignment as the authors' SAMM preprocessing: face width 256, left eye at (0.35, 0.35).
ALIGN_WIDTH, ALIGN_EYE = 256, (0.35, 0.35)
FACE_MODES = ("dlib", "none")
ENCODINGS = ("fixed", "minmax")
# A stream's mode: F, S, G are the third channel of a SIZE x SIZE (u, v, X) image (magnitude,
# strain, gray apex); O is STSTNet's whole 28x28 (u, v, strain) image (stream()).
MODES = ("F", "S", "G", "O")


class PreprocessError(utils.UserError):
    """A frame or face problem, with a message that names the file."""


def settings(face, encoding, flow="ipol"):
    """Everything that changes a cache's content; stored in each cache and compared on load
    (so caches made with one flow method are never read as the other)."""
    if flow not in FLOW_METHODS:
        raise ValueError(f"--flow must be one of {', '.join(FLOW_METHODS)}, got {flow!r}")
    return {"version": 2, "size": SIZE, "face": face, "encoding": encoding, "flow": flow,
            "tvl1": IPOL_TVL1 if flow == "ipol" else TVL1,
            "align": [ALIGN_WIDTH, *ALIGN_EYE], "strain_scale": STRAIN_SCALE}


def file_settings(kind, encoding):
    """settings() of a cache made from a precomputed flow file of `kind` (see flow_kind): float
    flows are encoded as computed ones are; 8-bit flow images are only resized."""
    if kind == "float":
        return {"version": 2, "size": SIZE, "kind": "float", "encoding": encoding,
                "resize": "bilinear, vectors scaled", "strain_scale": STRAIN_SCALE}
    return {"version": 2, "size": SIZE, "kind": "image", "resize": "nearest"}


def read_image(path):
    if not os.path.isfile(path):
        raise PreprocessError(f"{path}: frame not found")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise PreprocessError(f"{path}: cannot read image")
    return img


def landmark_model_path():
    """dlib's 68-landmark model as shipped by face-recognition-models, found without importing
    the package (its __init__ needs pkg_resources, gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise PreprocessError("face-recognition-models is not installed (pip install -r requirements.txt)")
    path = os.path.join(spec.submodule_search_locations[0], "models", "shape_predictor_68_face_landmarks.dat")
    if not os.path.isfile(path):
        raise PreprocessError(f"{path}: dlib landmark model missing")
    return path


_DLIB = {}


def landmarks(img, name="image"):
    """(68, 2) float landmarks of the largest face in a BGR image (dlib HOG detector)."""
    import dlib  # lazy: `--face none` runs need no dlib
    if not _DLIB:
        _DLIB["detect"] = dlib.get_frontal_face_detector()
        _DLIB["predict"] = dlib.shape_predictor(landmark_model_path())
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    # Detect on a copy at most 480 px high (dlib's HOG is quadratic in the image side),
    # then fit landmarks on the full-resolution frame.
    s = min(1.0, 480.0 / gray.shape[0])
    small = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else gray
    faces = _DLIB["detect"](small, 1 if small.shape[0] < 300 else 0)
    if len(faces) == 0:
        raise PreprocessError(f"{name}: no face found")
    f = max(faces, key=lambda r: r.width() * r.height())
    rect = dlib.rectangle(int(f.left() / s), int(f.top() / s), int(f.right() / s), int(f.bottom() / s))
    shape = _DLIB["predict"](gray, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def align_matrix(pts, name="image"):
    """2x3 affine that levels the eyes and puts them at ALIGN_EYE of a SIZE x SIZE crop."""
    left, right = pts[36:42].mean(0), pts[42:48].mean(0)   # image-left eye, image-right eye
    dx, dy = right - left
    if math.hypot(dx, dy) < 1:   # a landmark fit that failed: no scale to take from the eyes
        raise PreprocessError(f"{name}: the two eyes found less than a pixel apart; no face to align")
    angle = math.degrees(math.atan2(dy, dx))
    scale = (1 - 2 * ALIGN_EYE[0]) * ALIGN_WIDTH / math.hypot(dx, dy)
    center = (left + right) / 2
    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), angle, scale)
    m[0, 2] += ALIGN_WIDTH * 0.5 - center[0]
    m[1, 2] += ALIGN_WIDTH * ALIGN_EYE[1] - center[1]
    return m * (SIZE / ALIGN_WIDTH)   # warp straight to 227 instead of 256 then resize


def aligner(onset, face="dlib", onset_name="onset"):
    """The SIZE x SIZE crop of a clip as a function of a frame. With face='dlib' the eye
    alignment is found on the onset frame and the same transform serves every later frame (the
    authors' SAMM procedure), so the flow sees only the facial movement, not a re-fit of the
    landmarks; face='none' (pre-cropped frames) only resizes."""
    if face == "dlib":
        m = align_matrix(landmarks(onset, onset_name), onset_name)
        return lambda img: cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_CUBIC,
                                          borderMode=cv2.BORDER_REPLICATE)
    if face == "none":
        return lambda img: cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    raise ValueError(f"--face must be one of {', '.join(FACE_MODES)}, got {face!r}")


def crop_pair(onset, apex, face="dlib", onset_name="onset"):
    """Onset and apex crops of SIZE x SIZE (see aligner)."""
    if onset.shape != apex.shape:
        raise PreprocessError(f"{onset_name}: onset is {onset.shape[1]}x{onset.shape[0]} but apex is "
                              f"{apex.shape[1]}x{apex.shape[0]}; frames of a clip must have one size")
    crop = aligner(onset, face, onset_name)
    return crop(onset), crop(apex)


_TVL1 = {}


def tvl1_flow(onset_gray, apex_gray, method="ipol"):
    """TV-L1 flow onset -> apex of two uint8 gray images, (u, v) float32 in pixels: the IPOL
    program's (the authors', see tvl1_ipol) or OpenCV's DualTVL1 with the same parameters."""
    if method == "ipol":
        f = tvl1_ipol(torch.from_numpy(np.ascontiguousarray(onset_gray))[None],
                      torch.from_numpy(np.ascontiguousarray(apex_gray))[None])[0].numpy()
        return f[0], f[1]
    if method == "opencv":
        if "of" not in _TVL1:   # one solver per process: creating it costs more than a small flow
            _TVL1["of"] = cv2.optflow.DualTVL1OpticalFlow_create(**TVL1)
        flow = _TVL1["of"].calc(onset_gray, apex_gray, None)
        return flow[..., 0], flow[..., 1]
    raise ValueError(f"--flow must be one of {', '.join(FLOW_METHODS)}, got {method!r}")


# ---------------------------------------------------------------------------------------------
# TV-L1 as the IPOL program computes it: J. Sanchez, E. Meinhardt-Llopis, G. Facciolo, "TV-L1
# Optical Flow Estimation", Image Processing On Line 3 (2013) 137-150 (the authors ran its
# program, tvl1flow_3), written from the article's description and checked against the
# program's flows (tests/data/ipol_tvl1). Vectorised over the pixels and a batch of pairs; runs
# on the inputs' device.

def _gaussian(x, sigma, taps=None):
    """Separable Gaussian of (B, H, W), as the program's: int(5 sigma) taps each side of the
    centre, normalised to sum 1, and a mirror that skips the edge pixel on the left / top but
    repeats it on the right / bottom (the program's boundary; without that asymmetry the
    flow differs by up to 0.5 px at those borders). On CPU a convolution (oneDNN, fp32); on
    other devices (`taps` None) a sum over the taps, elementwise fp32: cuDNN runs fp32
    convolutions in TF32 by default on compute capability 8.0+ (torch docs, CUDA semantics,
    TensorFloat-32), a process-wide setting, and TF32's 10-bit mantissa in this blur moves the flow
    beyond its agreement with the program."""
    r = int(5 * sigma)
    i = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-i * i / (2 * sigma * sigma))
    k = (k / k.sum()).to(x)
    taps = x.device.type != "cpu" if taps is None else taps

    def mirror(n):
        j = torch.arange(-r, n + r)
        j = torch.where(j < 0, -j, torch.where(j >= n, 2 * n - 1 - j, j))
        return j.clamp(0, n - 1).to(x.device)   # clamp: images narrower than the kernel

    def blur(x, dim):   # x mirrored along dim -> blurred along it
        if not taps:
            return F.conv2d(x, k.view(1, 1, -1, 1) if dim == 2 else k.view(1, 1, 1, -1))
        n, w = x.shape[dim] - 2 * r, k.tolist()
        out = x.narrow(dim, 0, n) * w[0]
        for t in range(1, 2 * r + 1):
            out.add_(x.narrow(dim, t, n), alpha=w[t])
        return out

    x = x.index_select(2, mirror(x.shape[2]))
    x = blur(x[:, None], 3)
    x = x.index_select(2, mirror(x.shape[2]))
    return blur(x, 2)[:, 0]


def _keys_weights(t):
    """Keys' cubic convolution with a = -0.5 (Catmull-Rom) as weights of p[-1], p0, p1, p2."""
    t2, t3 = t * t, t * t * t
    return torch.stack([0.5 * (2 * t2 - t - t3), 1 + 1.5 * t3 - 2.5 * t2,
                        0.5 * (t + 4 * t2 - 3 * t3), 0.5 * (t3 - t2)], 1)


def _bicubic(img, x, y, zero_outside):
    """img (B, C, H, W) at the points (x, y) (B, h, w) -> (B, C, h, w), the program's way: the
    4x4 neighbours of the coordinate truncated toward zero, stepping in the direction of its
    sign, indices clamped to the image; the row above uses the sign of x (the program's quirk,
    it matters for negative coordinates only). With zero_outside a point whose 4x4 support
    leaves the image is 0 (the warps)."""
    B, C, H, W = img.shape
    ix, iy = x.trunc(), y.trunc()
    sx, sy = torch.where(x < 0, -1.0, 1.0), torch.where(y < 0, -1.0, 1.0)
    cols = torch.stack([ix - sx, ix, ix + sx, ix + 2 * sx], 1)           # (B, 4, h, w)
    rows = torch.stack([iy - sx, iy, iy + sy, iy + 2 * sy], 1)
    wx = _keys_weights(x - cols[:, 1].clamp(0, W - 1))   # offset from the clamped centre
    wy = _keys_weights(y - rows[:, 1].clamp(0, H - 1))
    idx = rows.clamp(0, H - 1).long()[:, :, None] * W + cols.clamp(0, W - 1).long()[:, None]
    n = x.shape[1] * x.shape[2]
    v = img.reshape(B, C, H * W).gather(2, idx.view(B, 1, 16 * n).expand(B, C, -1)).view(B, C, 16, n)
    out = (v * (wy[:, :, None] * wx[:, None]).view(B, 1, 16, n)).sum(2).view(B, C, *x.shape[1:])
    if zero_outside:
        gone = ((cols < 0) | (cols > W - 1)).any(1) | ((rows < 0) | (rows > H - 1)).any(1)
        out.masked_fill_(gone[:, None], 0.0)
    return out


def _grid(h, w, like):
    y, x = torch.meshgrid(torch.arange(h, dtype=like.dtype, device=like.device),
                          torch.arange(w, dtype=like.dtype, device=like.device), indexing="ij")
    return x, y


def _centred_gradient(I):
    """(B, H, W) -> (B, 2, H, W): centred differences, half the one-sided one on the borders."""
    g = torch.empty(I.shape[0], 2, *I.shape[1:], dtype=I.dtype, device=I.device)
    for d, gd in ((2, g[:, 0]), (1, g[:, 1])):
        n = I.shape[d]
        gd.narrow(d, 1, n - 2).copy_(0.5 * (I.narrow(d, 2, n - 2) - I.narrow(d, 0, n - 2)))
        gd.narrow(d, 0, 1).copy_(0.5 * (I.narrow(d, 1, 1) - I.narrow(d, 0, 1)))
        gd.narrow(d, n - 1, 1).copy_(0.5 * (I.narrow(d, n - 1, 1) - I.narrow(d, n - 2, 1)))
    return g


def _tvl1_level(I0, I1, u, P):
    """The article's algorithm at one scale: warps, each iterating the thresholding step
    and the dual (Chambolle) step until the mean squared change of u is <= epsilon^2 or
    max_iter; every pair of the batch stops on its own (it leaves the active set)."""
    B, H, W = I0.shape
    lt, theta, taut = P["lambda_"] * P["theta"], P["theta"], P["tau"] / P["theta"]
    lim = P["epsilon"] * math.sqrt(H * W)   # mean |du|^2 <= eps^2  <=>  ||du|| <= eps sqrt(HW)
    stack = torch.cat([I1[:, None], _centred_gradient(I1)], 1)   # I1 and its gradient, warped together
    x, y = _grid(H, W, I0)
    p = torch.zeros(B, 2, 2, H, W, dtype=I0.dtype, device=I0.device)   # (pair, u1/u2, x/y)
    for _ in range(P["warps"]):
        w = _bicubic(stack, x + u[:, 0], y + u[:, 1], True)
        gI = w[:, 1:].contiguous()
        g = gI[:, 0] * gI[:, 0] + gI[:, 1] * gI[:, 1]
        rho_c = w[:, 0] - gI[:, 0] * u[:, 0] - gI[:, 1] * u[:, 1] - I0
        # 1/|grad I1w|^2, 0 where it is < 1e-10 (the program leaves u there in the middle case)
        inv_g = torch.where(g < 1e-10, 0.0, 1.0 / g)
        act = torch.arange(B, device=I0.device)
        ua, pa, gIa, rca, iga = u, p, gI, rho_c, inv_g
        grad = torch.zeros_like(p)   # forward differences; last column / row stay 0
        n = 0
        while True:
            n += 1
            # thresholding step: v = u - clamp(rho / |grad I1w|^2, -lt, lt) grad I1w
            # (the three cases of the article in one clamp)
            rho = torch.addcmul(rca, gIa[:, 0], ua[:, 0]).addcmul_(gIa[:, 1], ua[:, 1])
            rho.mul_(iga).clamp_(-lt, lt)
            v = torch.addcmul(ua, gIa, rho[:, None], value=-1.0)
            # u = v + theta div p; div by backward differences with p = 0 outside (p's last
            # column / row is always 0, so this is the article's border rule too)
            div = pa[:, :, 0] + pa[:, :, 1]
            div[..., 1:] -= pa[:, :, 0, :, :-1]
            div[..., 1:, :] -= pa[:, :, 1, :-1, :]
            v.add_(div, alpha=theta)
            err = (v - ua).square_().sum((1, 2, 3)).sqrt_()
            ua = v
            # dual (Chambolle) step: p = (p + tau/theta grad u) / (1 + tau/theta |grad u|)
            torch.sub(ua[..., 1:], ua[..., :-1], out=grad[:, :, 0, :, :-1])
            torch.sub(ua[..., 1:, :], ua[..., :-1, :], out=grad[:, :, 1, :-1, :])
            ng = torch.hypot(grad[:, :, 0], grad[:, :, 1]).mul_(taut).add_(1.0)
            pa = pa.add(grad, alpha=taut).div_(ng[:, :, None])
            go = (err > lim) if n < P["max_iter"] else torch.zeros_like(err, dtype=torch.bool)
            if bool(go.all()):   # one host sync an iteration, for the whole batch
                continue
            stop = ~go
            u = u.index_copy(0, act[stop], ua[stop])
            p = p.index_copy(0, act[stop], pa[stop])
            if not bool(go.any()):
                break
            act, ua, pa, gIa, rca, iga, grad = (t[go] for t in (act, ua, pa, gIa, rca, iga, grad))
    return u


def tvl1_ipol(I0, I1, **params):
    """TV-L1 flow I0 -> I1 of a batch of gray images (B, H, W) (any real dtype, 0..255 or not)
    -> (B, 2, H, W) float32 (u, v) in pixels, on the inputs' device, as the IPOL program
    computes it with the authors' parameters (IPOL_TVL1; override with keyword args).

        flow = pp.tvl1_ipol(torch.from_numpy(onsets), torch.from_numpy(apexes))   # uint8 (B, H, W)
    """
    if I0.device.type != "cpu":
        return _tvl1_ipol(I0, I1, {**IPOL_TVL1, **params})
    # On CPU one thread: the images are too small for torch to gain from splitting an op, and
    # the thread barrier after each of the ~20 ops an iteration costs more than the op
    # (docs/performance.md).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _tvl1_ipol(I0, I1, {**IPOL_TVL1, **params})
    finally:
        torch.set_num_threads(threads)


def _tvl1_ipol(I0, I1, P):
    with torch.autocast(I0.device.type, enabled=False):   # fp32 throughout, as the program, in any caller
        return _tvl1_fp32(I0, I1, P)


def _tvl1_fp32(I0, I1, P):
    I0, I1 = I0.float(), I1.float()
    if I0.shape != I1.shape or I0.ndim != 3:
        raise ValueError(f"tvl1_ipol needs two (B, H, W) batches of one shape, got {tuple(I0.shape)} "
                         f"and {tuple(I1.shape)}")
    B, H, W = I0.shape
    # both images of a pair to 0..255 by their joint min and max
    lo = torch.minimum(I0.amin((1, 2)), I1.amin((1, 2)))[:, None, None]
    den = torch.maximum(I0.amax((1, 2)), I1.amax((1, 2)))[:, None, None] - lo
    scale = torch.where(den > 0, 255.0 / den, 1.0)
    lo = torch.where(den > 0, lo, 0.0)
    I0, I1 = (I0 - lo) * scale, (I1 - lo) * scale
    z = P["zoom"]
    # as many scales as keep the coarsest image about 16 px or more (the program's rule)
    nscales = max(1, min(P["nscales"], int(1 + math.log(math.hypot(W, H) / 16.0) / math.log(1 / z))))
    pyr = [torch.stack([_gaussian(I0, 0.8), _gaussian(I1, 0.8)], 1)]   # pre-smoothing
    for _ in range(1, nscales):   # zoom out: anti-alias blur, then bicubic at (x / z, y / z)
        h, w = (int(n * z + 0.5) for n in pyr[-1].shape[2:])
        blurred = _gaussian(pyr[-1].flatten(0, 1), 0.6 * math.sqrt(1 / z ** 2 - 1)).view_as(pyr[-1])
        x, y = _grid(h, w, I0)
        pyr.append(_bicubic(blurred, (x / z).expand(B, h, w), (y / z).expand(B, h, w), False))
    u = torch.zeros(B, 2, *pyr[-1].shape[2:], dtype=I0.dtype, device=I0.device)
    for s in range(nscales - 1, -1, -1):
        u = _tvl1_level(pyr[s][:, 0], pyr[s][:, 1], u, P)
        if s:   # zoom in: bicubic at (x / fx, y / fy), fx = finer width / coarser width, then / z
            (h, w), (hc, wc) = pyr[s - 1].shape[2:], u.shape[2:]
            x, y = _grid(h, w, u)
            u = _bicubic(u, (x / (w / wc)).expand(B, h, w), (y / (h / hc)).expand(B, h, w), False) / z
    return u


def optical_strain(u, v):
    """e = sqrt(u_x^2 + v_y^2 + 0.5 (u_y + v_x)^2) with forward differences; the last row /
    column repeats its neighbour's difference instead of wrapping around the border."""
    def dx(a):
        d = np.diff(a, axis=1)
        return np.concatenate([d, d[:, -1:]], axis=1)

    def dy(a):
        d = np.diff(a, axis=0)
        return np.concatenate([d, d[-1:]], axis=0)

    return np.sqrt(dx(u) ** 2 + dy(v) ** 2 + 0.5 * (dy(u) + dx(v)) ** 2)


def to_uint8(x, scale, offset, encoding):
    if encoding == "fixed":
        return np.clip(np.rint(x * scale + offset), 0, 255).astype(np.uint8)
    if encoding == "minmax":   # the port's per-sample, per-channel rescaling
        lo, hi = float(x.min()), float(x.max())
        return np.zeros(x.shape, np.uint8) if hi - lo < 1e-12 else \
            np.rint((x - lo) / (hi - lo) * 255).astype(np.uint8)
    raise ValueError(f"--encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")


def gray(img):
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def encode_flow(u, v, encoding="fixed"):
    """The flow's DSSN inputs u, v, F, S as uint8 images, and the flow itself (H, W, 2) float32
    in pixels (kept in the cache, so the flow can be exported without computing it again)."""
    return {
        "u": to_uint8(u, FLOW_SCALE, FLOW_OFFSET, encoding),
        "v": to_uint8(v, FLOW_SCALE, FLOW_OFFSET, encoding),
        "F": to_uint8(np.sqrt(u * u + v * v), FLOW_SCALE, FLOW_OFFSET, encoding),
        "S": to_uint8(optical_strain(u, v), STRAIN_SCALE, 0.0, encoding),
        "flow": np.stack([u, v], -1).astype(np.float32),
    }


def encode(on, ap, u, v, encoding="fixed"):
    """The DSSN inputs of aligned BGR crops `on`, `ap` and their flow (u, v), as uint8 images."""
    return encode_flow(u, v, encoding) | {
        "G": gray(ap),
        "onset": cv2.cvtColor(on, cv2.COLOR_BGR2RGB),
        "apex": cv2.cvtColor(ap, cv2.COLOR_BGR2RGB),
    }


def features(onset, apex, face="dlib", encoding="fixed", onset_name="onset", flow="ipol"):
    """All DSSN inputs of one onset/apex pair of BGR frames, as SIZE x SIZE uint8 images."""
    on, ap = crop_pair(onset, apex, face, onset_name)
    return encode(on, ap, *tvl1_flow(gray(on), gray(ap), flow), encoding)


def stream(feats, mode):
    """The image of one stream, channels last (a batch of them is a channels_last NCHW tensor after
    a permute, no copy): for F, S or G the 227x227 (u, v, X); for O STSTNet's 28x28 image in the
    channel order its script reads it with cv2.imread, BGR = (strain, v, u): from a float flow the
    image --export writes (flow_image), from an 8-bit flow image the image as stored."""
    if mode not in MODES:
        raise ValueError(f"--image_mode must be among {', '.join(MODES)}, got {mode!r}")
    if mode == "O":
        rgb = flow_image(feats["flow"]) if "flow" in feats else \
            shrink_nearest(np.stack([feats["u"], feats["v"], feats["S"]], axis=-1), STSTNET_SIZE)
        return np.ascontiguousarray(rgb[..., ::-1])
    return np.stack([feats["u"], feats["v"], feats[mode]], axis=-1)


def stream_size(mode):
    """The side of a stream's image."""
    return STSTNET_SIZE if mode == "O" else SIZE


def stream_keys(mode, image=False):
    """The cache entries a stream is made from; `image`: the sample is an 8-bit flow image (its
    cache holds u, v and S enlarged from it, and no float flow)."""
    if mode == "O":
        return ["u", "v", "S"] if image else ["flow"]
    return ["u", "v", mode]


# ---------------------------------------------------------------------------------------------
# Flow that was computed elsewhere: Middlebury .flo files (what the IPOL program writes), float
# arrays (.npy / .npz) and 8-bit (u, v, strain) images as STSTNet made the MEGC 2019 composite's
# (christy1206/STSTNet; redistributed by HTNet and CausalNet).

FLO_TAG = 202021.25   # Middlebury .flo: float32 tag, int32 width, int32 height, (u, v) float32 rows
FLOAT_FLOW_EXTS = (".flo", ".npy", ".npz")
# The 28x28 images are upsampled to the network's 227x227 with nearest neighbours: the authors'
# Keras code loaded its inputs with load_img(target_size=(227, 227)), whose default is 'nearest'.
IMAGE_RESIZE = cv2.INTER_NEAREST
STSTNET_SIZE = 28   # STSTNet's input side


def flow_kind(path):
    """"float" (u, v in pixels: .flo, .npy, .npz) or "image" (8-bit u, v, strain) by extension."""
    return "float" if os.path.splitext(str(path))[1].lower() in FLOAT_FLOW_EXTS else "image"


def read_flo(path):
    """A Middlebury .flo file as (H, W, 2) float32, checked: tag, size, finite values."""
    with open(path, "rb") as f:
        head = f.read(12)
        body = f.read()
    if len(head) < 12 or np.frombuffer(head[:4], "<f4")[0] != FLO_TAG:
        raise PreprocessError(f"{path}: not a .flo file (no tag {FLO_TAG} in its first 4 bytes)")
    w, h = (int(x) for x in np.frombuffer(head[4:], "<i4"))
    if not (0 < w < 1 << 16 and 0 < h < 1 << 16) or len(body) != w * h * 8:
        raise PreprocessError(f"{path}: .flo header says {w}x{h}, which needs {max(w * h, 0) * 8} bytes of "
                              f"flow; the file holds {len(body)}")
    return np.frombuffer(body, "<f4").reshape(h, w, 2).astype(np.float32)


def write_flo(f, flow):
    """Write (H, W, 2) flow to the open binary file f as Middlebury .flo (cv2.readOpticalFlow and
    the IPOL program's readers take it)."""
    h, w = flow.shape[:2]
    f.write(np.float32(FLO_TAG).tobytes() + np.array([w, h], "<i4").tobytes())
    f.write(np.ascontiguousarray(flow, "<f4").tobytes())


def read_flow(path):
    """(kind, array) of a flow file: ("float", (H, W, 2) float32 u, v in pixels) from .flo, .npy
    or .npz (its one array, or the one named `flow`), or ("image", (H, W, 3) uint8 u, v, strain
    in RGB order) from an 8-bit 3-channel image. Anything else is a PreprocessError naming it."""
    if not os.path.isfile(path):
        raise PreprocessError(f"{path}: flow file not found")
    kind, ext = flow_kind(path), os.path.splitext(str(path))[1].lower()
    if kind == "image":
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise PreprocessError(f"{path}: cannot read image")
        if img.dtype != np.uint8:
            raise PreprocessError(f"{path}: {img.dtype} image; flow images are 8-bit (u, v, strain)")
        if img.ndim != 3 or img.shape[2] != 3:
            raise PreprocessError(f"{path}: {1 if img.ndim == 2 else img.shape[2]}-channel image; flow "
                                  f"images have 3 channels (u, v, strain)")
        return kind, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)   # as written: R, G, B = u, v, strain
    if ext == ".flo":
        flow = read_flo(path)
    else:
        try:   # allow_pickle=False: a shared array file cannot run code
            flow = np.load(path, allow_pickle=False)
            if isinstance(flow, np.lib.npyio.NpzFile):
                with flow as z:
                    keys = list(z.keys())
                    key = "flow" if "flow" in keys else keys[0] if len(keys) == 1 else None
                    if key is None:
                        raise PreprocessError(f"{path}: {len(keys)} arrays ({', '.join(keys[:4])}) and none "
                                              f"named flow")
                    flow = z[key]
        except PreprocessError:
            raise
        except Exception as e:
            raise PreprocessError(f"{path}: cannot read array ({type(e).__name__}: "
                                  f"{(str(e).splitlines() or [''])[0]})") from None
        if flow.ndim != 3 or flow.shape[2] != 2 or not np.issubdtype(flow.dtype, np.floating):
            raise PreprocessError(f"{path}: array of shape {flow.shape} and type {flow.dtype}; a flow is "
                                  f"(H, W, 2) floats (u, v in pixels)")
        flow = flow.astype(np.float32)
    if not np.isfinite(flow).all():
        raise PreprocessError(f"{path}: {int((~np.isfinite(flow)).sum())} NaN or infinite flow values")
    return kind, flow


def resize_flow(flow):
    """(H, W, 2) flow to SIZE x SIZE, the vectors scaled with the image (u by SIZE / W, v by
    SIZE / H): the flow the same motion has between frames resized to the network's crop, where
    the project computes its own flow. A SIZE x SIZE flow is returned as it is."""
    h, w = flow.shape[:2]
    if (h, w) == (SIZE, SIZE):
        return flow
    out = cv2.resize(flow, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    return out * np.array([SIZE / w, SIZE / h], np.float32)


def flow_file_features(flow_path, apex_path=None, encoding="fixed"):
    """The DSSN inputs of a precomputed flow file (read_flow) and, if given, its apex face image
    (already cropped: resized to SIZE, gray). A float flow gives u, v, F, S as a flow computed
    from frames does (encode_flow); an 8-bit image gives u, v and S as stored, resized."""
    kind, flow = read_flow(flow_path)
    if kind == "float":
        flow = resize_flow(flow)
        feats = encode_flow(flow[..., 0], flow[..., 1], encoding)
    else:
        feats = image_features(flow)
    if apex_path:
        apex = read_image(apex_path)
        if apex.shape[:2] != (SIZE, SIZE):
            apex = cv2.resize(apex, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        feats["G"] = gray(apex)
    return feats


def shrink_nearest(img, size):
    """The size x size image that cv2.resize(..., IMAGE_RESIZE) enlarged into `img`, exactly: each
    source pixel read back from the first target pixel that nearest-neighbour resizing copied it to
    (found by resizing the pixel indices themselves, so it follows OpenCV's own rounding)."""
    return img[np.ix_(_nearest_sources(img.shape[0], size), _nearest_sources(img.shape[1], size))]


@functools.lru_cache(maxsize=None)
def _nearest_sources(n, size):
    """For each of `size` source pixels, the first of `n` target pixels that IMAGE_RESIZE copies it
    to (the same for every sample: computed once)."""
    up = cv2.resize(np.arange(size, dtype=np.float32)[None, :], (n, 1), interpolation=IMAGE_RESIZE)[0]
    return np.searchsorted(up, np.arange(size))


def flow_image(flow, size=STSTNET_SIZE):
    """STSTNet's input image of a float flow: u, v and the optical strain, each resized to
    size x size and min-max scaled to 0..255 per channel, as (H, W, 3) uint8 in RGB order (u, v,
    strain), the layout of the MEGC 2019 composite's images."""
    u, v = flow[..., 0], flow[..., 1]
    chans = [cv2.resize(c.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
             for c in (u, v, optical_strain(u, v))]
    return np.stack([to_uint8(c, 1.0, 0.0, "minmax") for c in chans], -1)


def image_features(img):
    """u, v and S of an 8-bit (u, v, strain) image in RGB order, enlarged to SIZE x SIZE with
    IMAGE_RESIZE: the streams of a flow image file, and predict.py's of a new clip for a model
    trained on such images (its flow made into flow_image first)."""
    img = cv2.resize(img, (SIZE, SIZE), interpolation=IMAGE_RESIZE)
    return {"u": img[..., 0].copy(), "v": img[..., 1].copy(), "S": img[..., 2].copy()}
