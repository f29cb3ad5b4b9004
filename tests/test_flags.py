"""flags.py: a flag that several scripts take is the same flag in each (type, choices, default,
help), both spellings of the sheet and the dataset folder work everywhere, and --device is resolved
and refused alike."""
import os
import re

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
    fake_gpus(monkeypatch, (9, 0), (9, 0))
    assert flags.resolve_device("auto") == "cuda" and flags.resolve_device("cuda:1") == "cuda:1"


def test_scripts_refuse_a_cuda_device_torch_cannot_see(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(flags, "nvidia_driver", lambda: (False, None))   # a machine without NVIDIA hardware
    for main, argv in ((train.main, ["--device", "cuda", "--demo_dir", str(tmp_path / "demo")]),
                       (bench.main, ["--device", "cuda", "--quick"]),
                       (predict.main, ["--device", "cuda", "--weights", "w.pt", "--onset", "a",
                                       "--apex", "x"])):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == "error: --device cuda: torch sees no CUDA device (use --device cpu)\n", err
    assert not (tmp_path / "demo").exists()   # refused before any work


ARCH_CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]   # torch 2.14.1+cu130's list


def fake_gpus(monkeypatch, *capabilities, arch=ARCH_CU130):
    """What torch answers on a machine with these GPUs (compute capabilities) for a build with
    kernels for `arch`: resolve_device's view of a GPU machine, on any machine."""
    index = lambda d: 0 if d in (None, "cuda") else int(str(d).partition(":")[2] or 0) \
        if isinstance(d, str) else int(d)
    names = {(7, 0): "Tesla V100", (7, 5): "Tesla T4", (8, 0): "A100", (9, 0): "H100"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capabilities[index(d)])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: names[capabilities[index(d)]])
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: arch)
    monkeypatch.setattr(torch.version, "cuda", "13.0")


def test_arch_list_covers_a_gpu_as_cuda_binaries_run():
    # a cubin runs on its major version at its minor or above; PTX (compute_XY) on anything newer
    for cc, ok in (((7, 0), False), ((7, 5), True), ((8, 6), True), ((8, 9), True), ((9, 0), True),
                   ((10, 3), True), ((12, 1), True), ((6, 1), False), ((11, 0), False)):
        assert flags.arch_supported(cc, ARCH_CU130) == ok, cc
    assert not flags.arch_supported((8, 0), ["sm_86"]) and flags.arch_supported((8, 9), ["sm_86"])
    assert flags.arch_supported((7, 0), ["sm_60", "compute_60"]) \
        and not flags.arch_supported((7, 0), ["sm_60"])


def test_auto_says_in_one_line_why_it_runs_on_the_cpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(flags, "nvidia_driver", lambda: (False, None))
    assert flags.resolve_device("auto") == "cpu"
    assert capsys.readouterr().err == "--device auto: no CUDA device: running on the CPU\n"
    # a machine with an NVIDIA GPU that torch cannot use: the line says why
    monkeypatch.setattr(flags, "nvidia_driver", lambda: (True, "550.54.15"))
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    for driver, cuda, why in (("550.54.15", "13.0", "NVIDIA driver 550.54.15 is older than the 580 that "
                                                    f"torch {torch.__version__}'s CUDA 13.0 needs"),
                              ("590.44.01", "13.0", "cannot use the NVIDIA GPU (driver 590.44.01)"),
                              ("550.54.15", None, f"torch {torch.__version__} is a CPU build")):
        monkeypatch.setattr(flags, "nvidia_driver", lambda: (True, driver))
        monkeypatch.setattr(torch.version, "cuda", cuda)
        assert flags.resolve_device("auto") == "cpu"
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err \
            and err.endswith("(README, GPU): running on the CPU\n"), err
        with pytest.raises(utils.UserError,
                           match=r"^--device cuda: torch sees no CUDA device \(.*README, GPU"):
            flags.resolve_device("cuda")
    # a GPU this torch build has no kernels for (a V100 under a CUDA 13 build): auto says so and
    # uses the CPU, an explicit --device cuda is refused
    fake_gpus(monkeypatch, (7, 0))
    assert flags.resolve_device("auto") == "cpu"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Tesla V100 (compute capability 7.0) is not among the GPUs" in err
    with pytest.raises(utils.UserError, match=r"^--device cuda:0: Tesla V100 .*sm_75 .*--device cpu$"):
        flags.resolve_device("cuda:0")
    fake_gpus(monkeypatch, (9, 0))
    assert flags.resolve_device("auto") == "cuda" and capsys.readouterr().err == ""
    for name, message in (("cuda:1", "torch sees 1 CUDA device (cuda:0)"),
                          ("cuda1", "expected auto, cpu, cuda or cuda:N")):
        with pytest.raises(utils.UserError, match="^" + re.escape(f"--device {name}: {message}") + "$"):
            flags.resolve_device(name)


def test_tf32_only_where_there_is_tf32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(utils.UserError,
                       match=r"^--tf32: TF32 is a mode of NVIDIA GPUs .* this run is on cpu$"):
        flags.resolve_device("cpu", tf32=True)
    fake_gpus(monkeypatch, (8, 0), (7, 5))
    assert flags.resolve_device("cuda:0", tf32=True) == "cuda:0"
    with pytest.raises(utils.UserError, match=r"this run is on cuda:1 \(Tesla T4\)$"):
        flags.resolve_device("cuda:1", tf32=True)


def test_deterministic_sets_cublas_workspace_only_when_unset(monkeypatch):
    fake_gpus(monkeypatch, (9, 0))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    flags.resolve_device("cuda")
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    flags.resolve_device("cuda", deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"   # torch docs: ":4096:8" or ":16:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    flags.resolve_device("auto", deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"   # the user's own is kept


@pytest.fixture
def torch_flags():
    """cuda_numerics sets torch's global flags; put them back for other tests."""
    b = torch.backends
    saved = (b.cudnn.conv.fp32_precision, b.cudnn.rnn.fp32_precision, b.cuda.matmul.fp32_precision,
             b.cudnn.benchmark, b.cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    b.cudnn.conv.fp32_precision, b.cudnn.rnn.fp32_precision, b.cuda.matmul.fp32_precision = saved[:3]
    b.cudnn.benchmark, b.cudnn.deterministic = saved[3:5]
    torch.use_deterministic_algorithms(saved[5], warn_only=saved[6])


def test_cuda_numerics_are_fp32_and_set_whole_each_run(torch_flags, monkeypatch):
    b = torch.backends
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(True, warn_only=True)   # what a CPU run leaves behind
    flags.cuda_numerics()
    # cuDNN's default would run fp32 convolutions in TF32
    assert not b.cudnn.allow_tf32 and not b.cuda.matmul.allow_tf32 and b.cudnn.conv.fp32_precision != "tf32"
    assert b.cudnn.benchmark and not b.cudnn.deterministic \
        and not torch.are_deterministic_algorithms_enabled()
    flags.cuda_numerics(tf32=True, deterministic=True)
    assert b.cudnn.allow_tf32 and b.cuda.matmul.allow_tf32 and b.cudnn.conv.fp32_precision == "tf32"
    assert not b.cudnn.benchmark and b.cudnn.deterministic and torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_every_script_takes_tf32_and_deterministic():
    for p in (train.parser(), bench.parser(), predict.parser()):
        a = actions(p)
        assert a["tf32"].default is False and a["deterministic"].default is False
        assert a["tf32"].help == actions(train.parser())["tf32"].help
