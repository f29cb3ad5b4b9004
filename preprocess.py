"""
Pure functions on frames: face alignment, TV-L1 flow and the DSSN input images.

    import preprocess as pp
    onset, apex = pp.read_image("sub01/EP02_01f/img46.jpg"), pp.read_image(".../img59.jpg")
    feats = pp.features(onset, apex, face="dlib")   # dict of 227x227 uint8 images

`features` returns u, v (horizontal / vertical flow onset -> apex), F (flow magnitude),
S (optical strain), G (grayscale apex) and the aligned onset / apex crops (RGB, for plots).
Facts behind every choice: ../shared/reference/dssn-facts.md, section 1.
"""
import importlib.util
import math
import os

import cv2
import numpy as np

SIZE = 227
# The IPOL TV-L1 program's defaults, used by the authors (Micro-Expression-with-Deep-Learning,
# External-Tools/tvl1flow_3). OpenCV's only differing default is scaleStep 0.8 (IPOL zoom 0.5).
TVL1 = dict(tau=0.25, lambda_=0.15, theta=0.3, nscales=5, warps=5, epsilon=0.01, scaleStep=0.5)
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
MODES = ("F", "S", "G")  # the third channel of a stream: magnitude, strain, gray apex


class PreprocessError(Exception):
    """A frame or face problem, with a message that names the file."""


def settings(face, encoding):
    """Everything that changes a cache's content; stored in each cache and compared on load."""
    return {"version": 1, "size": SIZE, "face": face, "encoding": encoding, "tvl1": TVL1,
            "align": [ALIGN_WIDTH, *ALIGN_EYE], "strain_scale": STRAIN_SCALE}


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


def align_matrix(pts):
    """2x3 affine that levels the eyes and puts them at ALIGN_EYE of a SIZE x SIZE crop."""
    left, right = pts[36:42].mean(0), pts[42:48].mean(0)   # image-left eye, image-right eye
    dx, dy = right - left
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
        m = align_matrix(landmarks(onset, onset_name))
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


def tvl1_flow(onset_gray, apex_gray):
    """TV-L1 flow onset -> apex, (u, v) float32 in pixels."""
    if "of" not in _TVL1:   # one solver per process: creating it costs more than a small flow
        _TVL1["of"] = cv2.optflow.DualTVL1OpticalFlow_create(**TVL1)
    flow = _TVL1["of"].calc(onset_gray, apex_gray, None)
    return flow[..., 0], flow[..., 1]


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


def features(onset, apex, face="dlib", encoding="fixed", onset_name="onset"):
    """All DSSN inputs of one onset/apex pair of BGR frames, as SIZE x SIZE uint8 images."""
    on, ap = crop_pair(onset, apex, face, onset_name)
    on_g, ap_g = cv2.cvtColor(on, cv2.COLOR_BGR2GRAY), cv2.cvtColor(ap, cv2.COLOR_BGR2GRAY)
    u, v = tvl1_flow(on_g, ap_g)
    return {
        "u": to_uint8(u, FLOW_SCALE, FLOW_OFFSET, encoding),
        "v": to_uint8(v, FLOW_SCALE, FLOW_OFFSET, encoding),
        "F": to_uint8(np.sqrt(u * u + v * v), FLOW_SCALE, FLOW_OFFSET, encoding),
        "S": to_uint8(optical_strain(u, v), STRAIN_SCALE, 0.0, encoding),
        "G": ap_g,
        "onset": cv2.cvtColor(on, cv2.COLOR_BGR2RGB),
        "apex": cv2.cvtColor(ap, cv2.COLOR_BGR2RGB),
    }


def stream(feats, mode):
    """The 227x227x3 image of one stream: (u, v, X) with X = F, S or G (facts section 1),
    channels last: a batch of them is a channels_last NCHW tensor after a permute, no copy."""
    if mode not in MODES:
        raise ValueError(f"--image_mode must be among {', '.join(MODES)}, got {mode!r}")
    return np.stack([feats["u"], feats["v"], feats[mode]], axis=-1)
