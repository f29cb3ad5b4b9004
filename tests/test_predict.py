"""predict.py on a model from train.py --final: the same inputs as training, the apex search on a
video, the class-activation picture, --json, and one-line errors for bad input."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

import builders
import dataloader as dl
import make_demo
import network
import predict
import preprocess as pp
import train

FRAMES = 12   # conftest.DEMO_FRAMES: the shared demo's clips


@pytest.fixture(scope="module")
def final(demo, once):
    """final.pt of subjects 01 and 02 of the shared demo (10 clips, their caches already built)."""
    assert demo["frames"] == FRAMES

    def build(d):
        sheet = builders.subset_sheet(demo, ["01", "02"], d / "sheet.csv")
        assert train.main(["--path", sheet, "--img_root", demo["root"], "--cache_dir", demo["cache"],
                           "--final", "--weight_save_path", str(d / "run"), "--epochs", "8",
                           "--batch_size", "4", "--learning_rate", "1e-3", "--workers", "2",
                           "--device", "cpu"]) == 0
    d = once("predict", build)
    samples = dl.read_samples(str(d / "sheet.csv"), demo["root"], "CASME")
    return dict(weights=str(d / "run" / "final.pt"), cache=demo["cache"], samples=samples,
                rows=samples.table.to_dict("records"))


def clip_frames(row):
    folder = os.path.dirname(row["onset_path"])
    return [pp.read_image(os.path.join(folder, f"img{n}.jpg")) for n in range(1, FRAMES + 1)]


def write_video(path, frames, fourcc="MJPG"):
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30, (w, h))
    assert out.isOpened()
    for f in frames:
        out.write(f)
    out.release()
    return str(path)


def test_training_clips_get_the_training_inputs_and_their_class(final):
    # Clips of the training set (subject 01's, one of each class): this shows that predict.py
    # feeds the model exactly what training fed it (same alignment, flow, encoding and stream
    # layout) and that the saved model is the trained one; it says nothing about how well the
    # model does on unseen clips.
    data = dl.load_streams(final["samples"], final["cache"], ["F", "G"])
    model, ckpt = predict.load_checkpoint(final["weights"])
    for i, row in enumerate(final["rows"]):
        if row["subject"] != "01":
            continue
        out, extra = predict.predict(final["weights"], onset=row["onset_path"], apex=row["apex_path"])
        xs = predict.streams(extra["feats"], ckpt["image_mode"])
        cached = [torch.from_numpy(data.x[s, i:i + 1]).permute(0, 3, 1, 2) for s in range(2)]
        assert all(torch.equal(a, b) for a, b in zip(xs, cached)), row["filename"]
        with torch.no_grad():
            p = model(*cached).softmax(1)[0].numpy()
        assert np.allclose(list(out["probabilities"].values()), p, atol=1e-5)
        assert out["prediction"] == row["emotion"], (row["subject"], row["filename"], out)
        assert sum(out["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_apex_search_finds_the_known_apex(final, tmp_path):
    # Each demo clip rises smoothly to its apex (the sheet's ApexFrame), then partly returns.
    # Two extra onset frames in front make the onset index 2; the default window runs past the
    # end of the video and stops there. One subject's clips: one of each class.
    for row in [r for r in final["rows"] if r["subject"] == "01"]:
        frames = clip_frames(row)
        video = write_video(tmp_path / "clip.avi", frames[:1] * 2 + frames)
        out, _ = predict.predict(final["weights"], video=video, onset_frame=2)
        want = 2 + row["apex"] - 1
        assert abs(out["apex_frame"] - want) <= 2, (row["filename"], want, out)
        assert out["onset_frame"] == 2 and out["apex_searched"] == [3, FRAMES + 1]


def test_json_output(final, tmp_path, capsys):
    row = final["rows"][0]
    video = write_video(tmp_path / "clip.avi", clip_frames(row))
    assert predict.main(["--weights", final["weights"], "--video", video, "--onset_frame", "0",
                         "--apex_frame", str(row["apex"] - 1), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["onset_frame"] == 0 and out["apex_frame"] == row["apex"] - 1 and "apex_searched" not in out
    assert set(out["probabilities"]) == set(make_demo.CLASSES) and out["prediction"] in make_demo.CLASSES
    # on images: stdout is exactly one JSON object
    assert predict.main(["--weights", final["weights"], "--onset", row["onset_path"],
                         "--apex", row["apex_path"], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prediction"] == row["emotion"] and len(out["probabilities"]) == 5
    assert "onset_frame" not in out


def test_cam_peaks_where_the_clip_moves(final, tmp_path):
    # make_demo moves known landmarks for each class (make_demo._moves: the brows for surprise and
    # others, nose and upper lip for disgust, the lips for repression and happiness); the flow
    # stream's map must peak on them, within one CAM grid step and a bit (12 px of 227).
    peaks = {}
    for row in [r for r in final["rows"] if r["subject"] == "01"]:
        path = tmp_path / f"{row['emotion']}.png"
        out, extra = predict.predict(final["weights"], onset=row["onset_path"], apex=row["apex_path"],
                                     cam=str(path))
        assert out["prediction"] == row["emotion"]   # a map of the class that moved
        cams = extra["cams"]
        assert len(cams) == 2 and all(c.shape == (pp.SIZE, pp.SIZE) and c.max() > 0 for c in cams)
        # the picture: the aligned apex and one panel per stream, side by side
        img = cv2.imread(str(path))
        assert img is not None and img.shape[1] > 2.5 * img.shape[0]
        pts = pp.landmarks(cv2.cvtColor(extra["feats"]["apex"], cv2.COLOR_RGB2BGR), "aligned apex")
        moved, _ = make_demo._moves(row["emotion"], pts)
        y, x = np.unravel_index(np.argmax(cams[0]), cams[0].shape)
        peaks[row["emotion"]] = np.hypot(*(pts[moved] - (x, y)).T).min()
    assert all(d < 12 for d in peaks.values()), peaks
    # plain Grad-CAM is drawn too (--cam_method gradcam)
    predict.predict(final["weights"], onset=row["onset_path"], apex=row["apex_path"],
                    cam=str(tmp_path / "gradcam.png"), cam_method="gradcam")
    assert cv2.imread(str(tmp_path / "gradcam.png")).shape == img.shape
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def bad_inputs(final, d):
    row = final["rows"][0]
    video = write_video(d / "clip.avi", clip_frames(row))
    (d / "broken.mp4").write_text("not a video")
    (d / "broken.jpg").write_text("not an image")
    blank = np.random.default_rng(0).integers(90, 110, (240, 320, 3)).astype(np.uint8)
    cv2.imwrite(str(d / "blank.png"), blank)
    w = final["weights"]
    return {
        "out of range": (["--weights", w, "--video", video, "--onset_frame", "0", "--apex_frame", "40"],
                         f"--apex_frame 40 out of range (the video has {FRAMES} frames"),
        "onset out of range": (["--weights", w, "--video", video, "--onset_frame", "12"],
                               "--onset_frame 12 out of range"),
        "unreadable video": (["--weights", w, "--video", str(d / "broken.mp4"), "--onset_frame", "0"],
                             "cannot read video"),
        "missing video": (["--weights", w, "--video", str(d / "nothing.mp4"), "--onset_frame", "0"],
                          "video not found"),
        "unreadable image": (["--weights", w, "--onset", str(d / "broken.jpg"), "--apex", row["apex_path"]],
                             "cannot read image"),
        "no face": (["--weights", w, "--onset", str(d / "blank.png"), "--apex", str(d / "blank.png")],
                    "no face found"),
        "no face in video": (["--weights", w, "--video", write_video(d / "blank.avi", [blank] * 5),
                              "--onset_frame", "0"], "no face found"),
        "bad weights": (["--weights", str(d / "broken.jpg"), "--onset", row["onset_path"],
                         "--apex", row["apex_path"]],
                        "cannot read weights"),
        "apex before onset": (["--weights", w, "--video", video, "--onset_frame", "3", "--apex_frame", "2"],
                              "must come after"),
    }


def test_bad_input_gets_one_line_and_exit_2(final, tmp_path, capsys):
    for name, (argv, says) in bad_inputs(final, tmp_path).items():
        capsys.readouterr()
        assert predict.main(argv) == 2, name
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert err.startswith("error: ") and "\n" not in err and says in err, (name, err)
        assert captured.out == "", name


def test_preprocessing_follows_the_model(final, tmp_path, capsys):
    opencv = {"preprocess": {"dlib": json.loads(json.dumps(pp.settings("dlib", "fixed", "opencv")))}}
    assert predict.choose_face(opencv) == ("dlib", "fixed", "opencv")
    ipol = {"preprocess": {"none": json.loads(json.dumps(pp.settings("none", "minmax")))}}
    assert predict.choose_face(ipol) == ("none", "minmax", "ipol")
    assert "warning" not in capsys.readouterr().err
    # a file whose preprocessing settings lack the flow (or the encoding) is not a final.pt
    ckpt = torch.load(final["weights"], weights_only=True)
    del ckpt["preprocess"]["dlib"]["flow"]
    torch.save(ckpt, tmp_path / "final.pt")
    assert predict.main(["--weights", str(tmp_path / "final.pt"), "--onset", "a.jpg", "--apex", "b.jpg"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {tmp_path / 'final.pt'}: not a final.pt of train.py --final (its preprocess "
                   "settings name no encoding and flow, nor a kind of flow file)")


class Payload:
    """What a booby-trapped final.pt carries: unpickling it would create the file `path`."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_weights_that_would_run_code_are_refused(tmp_path, capsys):
    evil, marker = tmp_path / "final.pt", tmp_path / "pwned"
    ckpt = dict(state_dict={}, model="DSSN", num_classes=5, combination_mode="mul", image_mode=["F", "G"],
                classes=make_demo.CLASSES, preprocess={}, train_loss=Payload(str(marker)))
    torch.save(ckpt, evil)
    assert predict.main(["--weights", str(evil), "--onset", "a.jpg", "--apex", "b.jpg"]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert err.count("\n") == 0 and err.startswith(f"error: {evil}: refused") and "open" in err, err


@pytest.fixture(scope="module")
def ststnet(demo, once):
    """STSTNet's final.pt on subjects 01 and 02 of the shared demo (its 28x28 O image from frames)."""
    def build(d):
        sheet = builders.subset_sheet(demo, ["01", "02"], d / "sheet.csv")
        assert train.main(["--path", sheet, "--img_root", demo["root"], "--cache_dir", demo["cache"],
                           "--model", "STSTNet", "--final", "--weight_save_path", str(d / "run"),
                           "--epochs", "20", "--learning_rate", "1e-2", "--device", "cpu"]) == 0
    d = once("predict_ststnet", build)
    return dict(weights=str(d / "run" / "final.pt"), samples=dl.read_samples(str(d / "sheet.csv"),
                                                                             demo["root"], "CASME"))


def test_ststnet_gets_its_training_image(ststnet, demo):
    # the 28x28 image predict.py makes of a training clip is the one STSTNet was trained on
    data = dl.load_streams(ststnet["samples"], demo["cache"], ["O"])
    model, ckpt = predict.load_checkpoint(ststnet["weights"])
    assert ckpt["image_mode"] == ["O"] and data.x.shape[2:] == (28, 28, 3)
    for i, row in list(enumerate(ststnet["samples"].table.to_dict("records")))[:3]:
        out, extra = predict.predict(ststnet["weights"], onset=row["onset_path"], apex=row["apex_path"])
        (x,) = predict.streams(extra["feats"], ckpt["image_mode"])
        cached = torch.from_numpy(data.x[0, i:i + 1]).permute(0, 3, 1, 2)
        assert torch.equal(x, cached), row["filename"]
        with torch.no_grad():
            p = model(cached).softmax(1)[0].numpy()
        assert np.allclose(list(out["probabilities"].values()), p, atol=1e-5)


def test_a_checkpoint_whose_classes_do_not_fit_is_refused(ststnet, tmp_path, capsys):
    # a 3-class STSTNet's weights (the composite's) under a 5-class set's names, and a class list
    # shorter than the classifier
    ckpt = torch.load(ststnet["weights"], weights_only=True)
    three = network.build_model("STSTNet", 3).state_dict()
    cases = {"three.pt": (dict(ckpt, state_dict=three),
                          "weights do not fit a 5-class STSTNet (size mismatch for fc.weight"),
             "names.pt": (dict(ckpt, classes=ckpt["classes"][:3]),
                          "names 3 classes (" + " ".join(ckpt["classes"][:3]) + ") for a 5-class STSTNet")}
    for name, (c, says) in cases.items():
        torch.save(c, tmp_path / name)
        assert predict.main(["--weights", str(tmp_path / name), "--onset", "a.jpg", "--apex", "b.jpg"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {tmp_path / name}: {says}") and "\n" not in err, err
