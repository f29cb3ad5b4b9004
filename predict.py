"""
Classify a new clip with a model from `train.py --final`, and show what it looked at.

    python predict.py --weights runs/demo_final/final.pt --onset onset.jpg --apex apex.jpg
    python predict.py --weights final.pt --video clip.mp4 --onset_frame 12 --apex_frame 31
    python predict.py --weights final.pt --video clip.mp4 --onset_frame 12       # apex searched
    python predict.py --weights final.pt --video 'sub01/EP02_01f/img%d.jpg' --onset_frame 0 --json
    python predict.py ... --cam cam.png      # where the predicted class came from, one panel per stream

The pair goes through the training code: preprocess.features (dlib eye alignment on the onset,
TV-L1 flow onset -> apex) with the face mode and encoding stored in final.pt, then the streams
(u, v, F / S / G) as dataloader builds them; a model trained on flow files (--catego FLOWS) gets
the new clip's flow made into what its files held (flow_files). Frame numbers of a video count from 0 (an
image sequence given as a printf pattern counts from its first image). Without --apex_frame the apex
is the frame of greatest optical-flow energy from the onset within --onset_frame..--offset_frame
(default: the next --window frames). Prints the predicted class and every class's probability
(--json: one JSON object). --cam draws, for each stream, a HiResCAM map (Grad-CAM with the
gradient kept per location; --cam_method gradcam for the plain one) of the predicted class on
its last convolution over the aligned apex. Bad input (no face, unreadable file, frame out of
range) gets one line `error: ...` and exit status 2.
"""
import argparse
import json
import os
import pickle
import re
import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F

import flags
from network import build_model
import network
import preprocess as pp
import utils

# Farneback parameters of OpenCV's own example (pyr_scale, levels, winsize, iterations, poly_n,
# poly_sigma, flags): the apex search only ranks frames, it does not feed the model.
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)
# conv2's 27x27 grid back to input pixels: conv1 (11 px, stride 4) then the 3/2 max-pool put
# cell i's receptive field centre at input pixel 8 i + 9 (conv2 keeps the grid: 5 px, pad 2).
CAM_TO_INPUT = np.float32([[8, 0, 9], [0, 8, 9]])
CAM_BLUR = 8.0   # px, one step of that grid
CAM_METHODS = ("hirescam", "gradcam")   # see run_model


class PredictError(utils.UserError):
    """Bad input: the message is one line naming the file or flag."""


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="final.pt written by train.py --final")
    p.add_argument("--onset", help="onset frame (image file)")
    p.add_argument("--apex", help="apex frame (image file)")
    p.add_argument("--video", help="video file, or an image sequence as a printf pattern (img%%d.jpg)")
    p.add_argument("--onset_frame", type=utils.nonneg_int, help="onset frame index in --video (from 0)")
    p.add_argument("--apex_frame", type=utils.nonneg_int,
                   help="apex frame index in --video; omit to search for it")
    p.add_argument("--offset_frame", type=utils.nonneg_int,
                   help="last frame of the apex search (default onset + --window)")
    p.add_argument("--window", type=utils.positive_int, default=30,
                   help="frames after the onset searched for the apex")
    p.add_argument("--face", default="auto", choices=["auto", *pp.FACE_MODES],
                   help="face handling; auto = dlib if the model was trained with it, else as trained")
    p.add_argument("--cam", metavar="OUT.png", help="save a class-activation picture of the predicted class")
    p.add_argument("--cam_method", default="hirescam", choices=CAM_METHODS,
                   help="hirescam (Grad-CAM with element-wise gradients; default) or gradcam")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    flags.device(p, default="cpu", amp=False)
    return p


# ---------------------------------------------------------------------------------------------
# the model

def load_checkpoint(path, device="cpu"):
    """(model in eval mode, checkpoint dict) of a final.pt."""
    if not os.path.isfile(path):
        raise PredictError(f"{path}: weights file not found")
    try:
        # weights_only: tensors and plain values (the dict's lists and settings) only, so a shared
        # final.pt can never run code; anything else is refused.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        code = re.search(r"GLOBAL (\S+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
        if code:
            raise PredictError(f"{path}: refused: loading it would call {code[1]}; a final.pt holds only "
                               f"tensors and plain values, and nothing loaded may run code") from None
        # torch's weights-only message starts with advice to load unsafely; its reason comes later
        why = re.split(r"WeightsUnpickler error:\s*", str(e))[-1].strip()
        why = (why.splitlines() or [""])[0]
        raise PredictError(f"{path}: cannot read weights ({type(e).__name__}: {why})") from None
    need = ["state_dict", "model", "num_classes", "combination_mode", "image_mode", "classes", "preprocess"]
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in need):
        raise PredictError(f"{path}: not a final.pt of train.py --final (needs keys {', '.join(need)})")
    # frames: {face: settings naming encoding and flow}; flow files (FLOWS): {kind: file settings}
    if not ckpt["preprocess"] or not all(isinstance(s, dict) and ({"encoding", "flow"} <= set(s)
                                                                  or s.get("kind") in ("float", "image"))
                                         for s in ckpt["preprocess"].values()):
        raise PredictError(f"{path}: not a final.pt of train.py --final (its preprocess settings name no "
                           f"encoding and flow, nor a kind of flow file)")
    if len(ckpt["classes"]) != ckpt["num_classes"]:
        raise PredictError(f"{path}: names {len(ckpt['classes'])} classes ({' '.join(ckpt['classes'])}) "
                           f"for a {ckpt['num_classes']}-class {ckpt['model']}")
    try:
        model = build_model(ckpt["model"], ckpt["num_classes"], ckpt["combination_mode"],
                            streams=len(ckpt["image_mode"]))
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, ValueError) as e:
        # load_state_dict's first line only names the network; the first mismatch follows it
        lines = [s.strip() for s in str(e).strip().splitlines() if s.strip()] or [""]
        why = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0]
        raise PredictError(f"{path}: weights do not fit a {ckpt['num_classes']}-class {ckpt['model']} "
                           f"({why})") from None
    return model.to(device).eval(), ckpt


def choose_face(ckpt, face="auto"):
    """(face mode, encoding, flow) for new clips: dlib when the model was trained on aligned
    faces (a new clip is a raw frame), else what it was trained with; --face overrides. The
    encoding and the flow are the model's."""
    trained = ckpt["preprocess"]
    if face == "auto":
        face = "dlib" if "dlib" in trained else next(iter(trained))
    elif face not in trained:
        print(f"warning: the model was trained with --face {' / '.join(trained)}; using {face} as asked",
              file=sys.stderr)
    encoding, flow = (trained.get(face, next(iter(trained.values())))[k] for k in ("encoding", "flow"))
    want = pp.settings(face, encoding, flow)
    if face in trained and trained[face] != json.loads(json.dumps(want)):
        diff = [k for k, v in want.items()
                if json.dumps(trained[face].get(k)) != json.dumps(v)]
        print(f"warning: the model was trained with other preprocessing settings ({', '.join(diff)} "
              f"{'differs' if len(diff) == 1 else 'differ'} from this preprocess.py): predictions may be off",
              file=sys.stderr)
    return face, encoding, flow


def flow_files(ckpt, path):
    """The settings of the flow files (FLOWS) the model was trained on, or None for frames. A new
    clip is made into what they held: "float" (flow in pixels) is the flow computed here, encoded
    as a flow file's; "image" (8-bit (u, v, strain) images, min-max scaled per image) is the
    28x28 image the export writes (pp.flow_image) enlarged as in training (pp.image_features)."""
    trained = ckpt["preprocess"]
    files = [s for s in trained.values() if "kind" in s]
    if not files:
        return None
    if len(trained) > 1:
        raise PredictError(f"{path}: trained on flow files of several kinds ({', '.join(trained)}): a new "
                           f"clip can be made into one only; train on one kind of flow file")
    s = files[0]
    want = json.loads(json.dumps(pp.file_settings(s["kind"], s.get("encoding"))))
    if {k: s.get(k) for k in want} != want:
        print("warning: the model was trained on flow files read with other settings than this "
              "preprocess.py's: predictions may be off", file=sys.stderr)
    sizes = s.get("image_size", [[pp.STSTNET_SIZE] * 2]) if s["kind"] == "image" else [[0, 0]]
    if len(sizes) != 1 or sizes[0][0] != sizes[0][1]:
        raise PredictError(f"{path}: trained on 8-bit flow images of sizes "
                           f"{', '.join(f'{h}x{w}' for h, w in sizes)}"
                           f": a new clip's flow image is made at one square size; train on images of one")
    return s


def streams(feats, image_mode, device="cpu"):
    """The model's inputs, built as dataloader.load_streams and train.py do: (u, v, X) stacked
    channels-last as uint8, then NHWC -> NCHW by permute (the trunk converts to float)."""
    return [torch.from_numpy(pp.stream(feats, m)[None]).to(device).permute(0, 3, 1, 2) for m in image_mode]


def run_model(model, xs, cam=None, layers=()):
    """Class probabilities, and with cam = "hirescam" or "gradcam" a map of the predicted class
    for each stream (227x227 float, not normalised), taken on `layers` (one module a stream, the
    network's declared `cam` layers: conv2 of each trunk for SSSN and DSSN).

    Both are taken on each trunk's last convolution, conv2, at its 27x27 resolution after ReLU
    and before pooling (AlexNet's own order): A = relu(conv2 output), G = d logit / d conv2
    output. The trunk pools before its ReLU, which is the same function, and the gradient
    reaching a conv2 output is zero wherever that output is <= 0, so G is also the gradient
    with respect to A.
      gradcam:  relu(sum_k mean_xy(G_k) * A_k)   (Selvaraju et al. 2017)
      hirescam: relu(sum_k G_k * A_k)            (Draelos & Carin 2020), the default
    Grad-CAM's spatial mean of the gradient suits networks that pool globally before the
    classifier; DSSN's classifier is a linear layer over the flattened 15x15 maps, so the mean
    mixes locations of opposite sign (docs/predict.md compares the two on the demo). Both maps
    are then blurred by one grid step for display."""
    acts = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: acts.append(out)) for m in layers if cam]
    try:
        with torch.set_grad_enabled(cam is not None):
            logits = model(*xs)
    finally:
        for h in hooks:
            h.remove()
    probs = logits.detach().float().softmax(1)[0].cpu().numpy()
    if cam is None:
        return probs, None
    if cam not in CAM_METHODS:
        raise ValueError(f"cam method must be one of {', '.join(CAM_METHODS)}, got {cam!r}")
    grads = torch.autograd.grad(logits[0, int(probs.argmax())], acts)
    cams = []
    for a, g in zip(acts, grads):
        weights = g.mean((2, 3), keepdim=True) if cam == "gradcam" else g
        m = F.relu((weights * F.relu(a)).sum(1))[0].detach().float().cpu().numpy()
        up = cv2.warpAffine(m, CAM_TO_INPUT, (pp.SIZE, pp.SIZE), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
        # The max-pool after conv2 passes gradient to one cell of each window, so the 27x27 map
        # is a sparse grid of dots; a blur of one grid step (8 px) turns it into regions.
        cams.append(cv2.GaussianBlur(up, (0, 0), CAM_BLUR))
    return probs, cams


def plot_cam(path, apex_rgb, cams, image_mode, classes, probs, method="hirescam"):
    """The aligned apex, then each stream's class-activation map over it; written atomically."""
    plt = utils.pyplot()
    k = int(probs.argmax())
    fig, axes = plt.subplots(1, len(cams) + 1, figsize=(2.5 * (len(cams) + 1), 2.9))
    axes[0].imshow(apex_rgb)
    axes[0].set_title("aligned apex", fontsize=9)
    for i, (ax, c, m) in enumerate(zip(axes[1:], cams, image_mode), 1):
        ax.imshow(apex_rgb)
        peak = float(c.max())
        norm = c / peak if peak > 0 else c
        # Opacity follows the map, so the face shows through wherever the map is ~0.
        ax.imshow(norm, cmap="jet", alpha=np.clip(1.5 * norm, 0, 0.8), vmin=0, vmax=1)
        ax.set_title(f"stream {i} (u, v, {m}): peak {peak:.3g}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    name = {"hirescam": "HiResCAM", "gradcam": "Grad-CAM"}[method]
    fig.suptitle(f"predicted {classes[k]} (p = {probs[k]:.2f}); {name} on conv2, each panel scaled "
                 f"to its peak", fontsize=9)
    fig.tight_layout()
    utils.save_png(fig, path, dpi=80)


# ---------------------------------------------------------------------------------------------
# frames

def read_video(path, first, last):
    """({index: BGR frame} for first..last (0-based, inclusive; fewer if the video is shorter),
    frames decoded). Read in order from the start: seeking is not frame-exact for every codec."""
    if os.path.isdir(path):
        raise PredictError(f"{path}: a folder, not a video (an image sequence is given as a pattern, "
                           f"e.g. {os.path.join(path, 'img%d.jpg')})")
    if "%" in path and not os.path.isfile(path):
        # an image sequence: OpenCV (ffmpeg) starts at the first of indices 0..4 that exists,
        # and logs its own lines if none does, so that case is caught here
        try:
            first_files = [path % i for i in range(5)]
        except (TypeError, ValueError):
            raise PredictError(f"{path}: not a printf pattern like img%d.jpg or img%03d.jpg") from None
        if not any(os.path.isfile(f) for f in first_files):
            raise PredictError(f"{path}: no image of the sequence found (looked for {first_files[0]} .. "
                               f"{first_files[-1]})")
    elif not os.path.isfile(path):
        raise PredictError(f"{path}: video not found")
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise PredictError(f"{path}: cannot read video")
        frames, n = {}, 0
        while n <= last:
            ok, img = cap.read()
            if not ok:
                break
            if n >= first:
                frames[n] = img
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise PredictError(f"{path}: cannot read video (no frame decoded)")
    return frames, n


def flow_energy(onset, frames, face, name="onset"):
    """How far the face has moved from the onset in each frame: Farneback flow from the aligned
    onset to the aligned frame, minus its median (head drift), then the mean of the largest 1 %
    of magnitudes (px).

    The top 1 %, not the mean: an expression moves a few percent of the face, so the mean over
    the crop is mostly sensor and compression noise. Farneback, not TV-L1: it ranks frames alike
    at a small fraction of the cost (docs/predict.md); the chosen pair then goes through TV-L1
    like the training data."""
    warp = pp.aligner(onset, face, name)
    gray = lambda img: cv2.cvtColor(warp(img), cv2.COLOR_BGR2GRAY)
    g0 = gray(onset)
    out = []
    for img in frames:
        f = cv2.calcOpticalFlowFarneback(g0, gray(img), None, *FARNEBACK).reshape(-1, 2)
        mag = np.hypot(*(f - np.median(f, 0)).T)
        out.append(float(np.sort(mag)[-max(1, mag.size // 100):].mean()))
    return out


def video_pair(path, onset_frame, apex_frame=None, offset_frame=None, window=30, face="dlib"):
    """(onset, apex, info) from a video; the apex searched when apex_frame is None."""
    if onset_frame is None:
        raise PredictError("--video needs --onset_frame (0-based frame index)")
    if onset_frame < 0:
        raise PredictError(f"--onset_frame {onset_frame}: frame out of range (frames count from 0)")
    if apex_frame is not None and apex_frame <= onset_frame:
        raise PredictError(f"--apex_frame {apex_frame} must come after --onset_frame {onset_frame}")
    if offset_frame is not None and offset_frame <= onset_frame:
        raise PredictError(f"--offset_frame {offset_frame} must come after --onset_frame {onset_frame}")
    if window < 1:
        raise PredictError(f"--window {window}: must be 1 or more")
    end = apex_frame if apex_frame is not None else offset_frame if offset_frame is not None \
        else onset_frame + window
    frames, n = read_video(path, onset_frame, end)
    # Frames the user named must exist; the default window just stops at the end of the video.
    for flag, i in (("--onset_frame", onset_frame), ("--apex_frame", apex_frame),
                    ("--offset_frame", offset_frame)):
        if i is not None and i not in frames:
            raise PredictError(f"{path}: {flag} {i} out of range (the video has {n} frames, 0..{n - 1})")
    onset = frames[onset_frame]
    info = dict(onset_frame=onset_frame)
    if apex_frame is None:
        later = sorted(i for i in frames if i > onset_frame)
        if not later:
            raise PredictError(f"{path}: no frame after --onset_frame {onset_frame} "
                               f"(the video has {n} frames)")
        energy = flow_energy(onset, [frames[i] for i in later], face, f"{path} frame {onset_frame}")
        apex_frame = later[int(np.argmax(energy))]
        info.update(apex_searched=[later[0], later[-1]], flow_energy=[round(e, 4) for e in energy])
    info["apex_frame"] = apex_frame
    return onset, frames[apex_frame], info


# ---------------------------------------------------------------------------------------------

def predict(weights, onset=None, apex=None, video=None, onset_frame=None, apex_frame=None,
            offset_frame=None, window=30, face="auto", cam=None, cam_method="hirescam", device="cpu"):
    """(what predict.py prints, as a dict; extra: `cams` (one 227x227 map per stream, or None),
    `feats` (preprocess.features of the pair), `classes` and `meta` for callers and tests)."""
    model, ckpt = load_checkpoint(weights, device)
    net = network.MODELS[ckpt["model"]]
    if cam is not None and net.cam is None:
        raise PredictError(f"--cam: {net.name} declares no layer to take class activation maps on "
                           f"(network.py, declare(..., cam=...))")
    files = flow_files(ckpt, weights)
    if files is None:
        face, encoding, flow = choose_face(ckpt, face)
    else:   # flow files hold no frames: a new clip is aligned (dlib) and its flow computed (IPOL)
        face, encoding, flow = "dlib" if face == "auto" else face, files.get("encoding", "fixed"), "ipol"
    if video is not None:
        if onset or apex:
            raise PredictError("give either --onset and --apex, or --video, not both")
        on, ap, info = video_pair(video, onset_frame, apex_frame, offset_frame, window, face)
        name = f"{video} frame {onset_frame}"
    else:
        if not (onset and apex):
            raise PredictError("give --onset and --apex images, or --video with --onset_frame")
        if any(x is not None for x in (onset_frame, apex_frame, offset_frame)):
            raise PredictError("--onset_frame / --apex_frame / --offset_frame go with --video")
        on, ap, info, name = pp.read_image(onset), pp.read_image(apex), {}, onset
    feats = pp.features(on, ap, face=face, encoding=encoding, onset_name=name, flow=flow)
    if files is not None and files["kind"] == "image":
        side = files.get("image_size", [[pp.STSTNET_SIZE] * 2])[0][0]
        feats = {k: v for k, v in feats.items() if k != "F"} \
            | pp.image_features(pp.flow_image(feats["flow"], side))
    probs, cams = run_model(model, streams(feats, ckpt["image_mode"], device), cam_method if cam else None,
                            net.cam(model) if cam else ())
    classes = ckpt["classes"]
    if cam is not None:
        plot_cam(cam, feats["apex"], cams, ckpt["image_mode"], classes, probs, cam_method)
    out = dict(prediction=classes[int(probs.argmax())],
               probabilities={c: round(float(p), 6) for c, p in zip(classes, probs)}, **info)
    if cam is not None:
        out["cam"] = cam
    meta = dict(model=ckpt["model"], image_mode=ckpt["image_mode"],
                combination_mode=ckpt["combination_mode"],
                face=face, encoding=encoding, flow=flow, samples=ckpt.get("samples"),
                flow_files=files["kind"] if files else None,
                subjects=ckpt.get("subjects"))
    return out, dict(cams=cams, feats=feats, classes=classes, meta=meta)


def report(out, extra, args):
    m = extra["meta"]
    print(f"model: {m['model']} {' '.join(m['image_mode'])}"
          + (f" {m['combination_mode']}" if m["combination_mode"] else "")
          + f", trained on {m['samples']} samples of {len(m['subjects'] or [])} subjects ({args.weights}); "
          f"face {m['face']}, " + (f"encoding {m['encoding']}" if m["flow_files"] != "image" else
                                    "8-bit (u, v, strain) 28x28 images, enlarged nearest")
          + f", flow {m['flow']}" + (" (trained on flow files)" if m["flow_files"] else ""))
    if "apex_searched" in out:
        a, b = out["apex_searched"]
        print(f"apex: frame {out['apex_frame']}, the greatest flow energy from onset frame "
              f"{out['onset_frame']} in frames {a}..{b} (Farneback, top 1 % of |flow - median|, px):")
        print("  " + " ".join(f"{i}:{e:.2f}" for i, e in zip(range(a, b + 1), out["flow_energy"])))
    elif "apex_frame" in out:
        print(f"onset frame {out['onset_frame']}, apex frame {out['apex_frame']}")
    print(f"prediction: {out['prediction']}")
    width = max(map(len, out["probabilities"]))
    for c, p in out["probabilities"].items():
        print(f"  {c:<{width}}  {p:.4f}  {'#' * round(30 * p)}")
    if "cam" in out:
        name = {"hirescam": "HiResCAM", "gradcam": "Grad-CAM"}[args.cam_method]
        print(f"{name} of {out['prediction']} on conv2 of each stream: {out['cam']}")


def run(args):
    args.device = flags.resolve_device(args.device, args.tf32, args.deterministic)
    if args.device.startswith("cuda"):
        flags.cuda_numerics(args.tf32, args.deterministic)
    out, extra = predict(args.weights, args.onset, args.apex, args.video, args.onset_frame, args.apex_frame,
                         args.offset_frame, args.window, args.face, args.cam, args.cam_method, args.device)
    if args.json:
        print(json.dumps(out))
    else:
        report(out, extra, args)
    return 0


def main(argv=None):
    args = parser().parse_args(argv)
    return utils.cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
