"""flags.py: a flag that several scripts take is the same flag in each (type, choices, default,
help), both spellings of the sheet and the dataset folder work everywhere, and --device is resolved
and refused alike."""
import pytest
import torch

import bench
import flags
import predict
import save_preprocess_weight
import train
import utils
import variants


def actions(p):
    return {a.dest: a for a in p._actions}


def test_shared_flags_are_one_definition():
    t, s = actions(train.parser()), actions(save_preprocess_weight.parser())
    shared = ["catego", "num_classes", "classes", "parts", "cache_dir", "face", "encoding", "flow", "workers"]
    for dest in shared:
        a, b = t[dest], s[dest]
        assert (a.type, a.choices, a.nargs, a.help) == (b.type, b.choices, b.nargs, b.help), dest
    assert t["workers"].type is utils.positive_int and t["num_classes"].type is utils.positive_int
    # the sheet and the folder: the same help, each script's own spelling shown first
    assert t["path"].help == s["csv_path"].help and t["img_root"].help.startswith(s["root"].help)
    assert t["path"].option_strings == ["--path", "--csv_path"]
    assert s["csv_path"].option_strings == ["--csv_path", "--path"]
    assert t["img_root"].option_strings == ["--img_root", "--root"]
    assert s["root"].option_strings == ["--root", "--img_root"]
    # save_preprocess_weight.py has no demo: the dataset folder and --catego must be given
    assert s["root"].required and s["catego"].required and not t["img_root"].required


def test_both_spellings_everywhere():
    a = train.parser().parse_args(["--csv_path", "s.csv", "--root", "R", "--catego", "CUSTOM"])
    assert (a.path, a.img_root, a.catego) == (["s.csv"], ["R"], "CUSTOM")
    a = save_preprocess_weight.parser().parse_args(["--path", "s.csv", "--img_root", "R",
                                                    "--catego", "CUSTOM"])
    assert (a.csv_path, a.root) == (["s.csv"], ["R"])
    _, rest, targs = variants.split_argv(["--modes", "G", "--csv_path", "s.csv", "--root", "R"])
    assert (targs.path, targs.img_root) == (["s.csv"], ["R"])
    assert rest == ["--csv_path", "s.csv", "--root", "R"]


def test_device_flag_and_its_resolution(monkeypatch):
    for p in (train.parser(), bench.parser(), predict.parser()):
        assert actions(p)["device"].help == "auto (cuda if available), cpu, cuda, cuda:1"
    assert predict.parser().get_default("device") == "cpu" and train.parser().get_default("device") == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert flags.resolve_device("auto") == "cpu" and flags.resolve_device("cpu") == "cpu"
    with pytest.raises(utils.UserError, match=r"^--device cuda:1: torch sees no CUDA device \(use --device"):
        flags.resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert flags.resolve_device("auto") == "cuda" and flags.resolve_device("cuda:1") == "cuda:1"


def test_scripts_refuse_a_cuda_device_torch_cannot_see(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for main, argv in ((train.main, ["--device", "cuda", "--demo_dir", str(tmp_path / "demo")]),
                       (bench.main, ["--device", "cuda", "--quick"]),
                       (predict.main, ["--device", "cuda", "--weights", "w.pt", "--onset", "a",
                                       "--apex", "x"])):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == "error: --device cuda: torch sees no CUDA device (use --device cpu)\n", err
    assert not (tmp_path / "demo").exists()   # refused before any work
