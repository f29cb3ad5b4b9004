"""
The flags that several scripts take, each defined once (name, type, range check, help), and the
resolution of --device.

    p = argparse.ArgumentParser()
    flags.data(p, sheet="--path", root="--img_root")   # the dataset; the other spelling is accepted too
    flags.preprocessing(p)                             # --cache_dir --face --encoding --flow --workers
    flags.device(p)                                    # --device, --amp, --tf32, --deterministic
    args.device = flags.resolve_device(args.device, args.tf32, args.deterministic)   # auto -> cuda or cpu
    flags.cuda_numerics(args.tf32, args.deterministic)   # on a CUDA device: TF32 and determinism

The sheet and the dataset folder have two spellings: `--path` / `--img_root` (train.py's, the command
line of Justin900429's PyTorch port) and `--csv_path` / `--root` (save_preprocess_weight.py's). Every
script takes both; `sheet` and `root` say which one its help shows first, and the attribute is named
after it.
"""
import os
import re
import shutil
import sys

import datasets
import preprocess as pp
import utils

SHEET = ("--path", "--csv_path")
ROOT = ("--img_root", "--root")


def _names(spellings, first):
    return [first] + [s for s in spellings if s != first]


def data(p, sheet="--path", root="--img_root", required=False, demo=False):
    """The dataset: coding sheet(s), dataset folder(s), --catego, the class set and a composite's
    parts. required: the folder and --catego must be given (no default dataset, no demo)."""
    p.add_argument(*_names(SHEET, sheet), dest=sheet[2:], nargs="+",
                   help="coding sheet(s), .xlsx as distributed or .csv (none for SMIC; COMPOSITE: the "
                   "sheets of its parts that have one, in order; CUSTOM: a CSV with columns subject, clip, "
                   "onset, apex, emotion [, offset]; FLOWS: the MEGC 2019 composite's label CSV, or a "
                   "CSV with columns subject, clip, emotion, flow [, apex_image, dataset], none for the "
                   "per-fold layout)")
    p.add_argument(*_names(ROOT, root), dest=root[2:], nargs="+", required=required,
                   help="dataset folder(s) holding the subject folders (SMIC: the HS, VIS or NIR folder; "
                   "COMPOSITE: one per part, in order, default CASME II, SAMM, SMIC; CUSTOM: the folder the "
                   "CSV's clip paths are under; FLOWS: the folder of the flow files, and with the "
                   "composite's CSV optionally the folder of its apex images)"
                   + (f"; omit {sheet} and {root} to run the synthetic demo" if demo else ""))
    p.add_argument("--catego", required=required, default=None if required else "CASME",
                   choices=list(datasets.DATASETS), help="dataset")
    p.add_argument("--num_classes", type=utils.positive_int, default=None,
                   help="class set: default the dataset's own (CASME, SAMM 5; SMIC, COMPOSITE, CASME3 3; "
                   "CUSTOM, FLOWS: the CSV's emotions); 3 = MEGC; CASME3 also 4, 7")
    p.add_argument("--classes", nargs="+", help="keep only these classes (CUSTOM: of the CSV's emotions)")
    p.add_argument("--parts", nargs="+", help="COMPOSITE of these datasets, in the order of the sheets and "
                   "folders (default CASME SAMM SMIC; any with a 3-class set, e.g. CASME SAMM CASME3)")


def preprocessing(p):
    """Where the feature caches are and how they are made (preprocess.py's settings)."""
    p.add_argument("--cache_dir", default=None,
                   help="feature caches (default cache/<catego>); missing ones are built")
    p.add_argument("--face", default="auto", choices=["auto", *pp.FACE_MODES],
                   help="auto: dlib alignment for raw frames, none for cropped (CASME II reg_img)")
    p.add_argument("--encoding", default="fixed", choices=pp.ENCODINGS,
                   help="fixed: authors' x16+128; minmax: the port's per-sample rescaling")
    p.add_argument("--flow", default="ipol", choices=pp.FLOW_METHODS,
                   help="TV-L1 flow: ipol, the authors' program (torch port); opencv: OpenCV's DualTVL1")
    p.add_argument("--workers", type=utils.positive_int, default=utils.cpus(),
                   help="preprocessing processes (default: the CPUs this job may use)")


def device(p, default="auto", amp=True):
    """--device (see resolve_device), --tf32 and --deterministic (see cuda_numerics) and, with
    `amp`, the mixed precision --amp."""
    p.add_argument("--device", default=default, help="auto (cuda if available), cpu, cuda, cuda:1")
    if amp:
        p.add_argument("--amp", default="auto", choices=["auto", "none", "bf16"],
                       help="mixed precision; auto = bf16 on a GPU with native bf16, else none (fp32); "
                       "bf16 where it is not native is refused")
    p.add_argument("--tf32", action="store_true",
                   help="CUDA, compute capability 8.0+: let cuDNN and cuBLAS run fp32 convolutions and "
                   "matrix products in TF32 (faster, a 10-bit mantissa: other results); without it "
                   "fp32 is fp32")
    p.add_argument("--deterministic", action="store_true",
                   help="CUDA: deterministic algorithms only, no cuDNN autotuning (slower), so a run repeats "
                   "bit for bit on the same GPU and software; CPU runs are deterministic without it")


# The minimum Linux driver for each major version of the CUDA torch was built with (NVIDIA's CUDA
# Compatibility guide, Minor Version Compatibility: CUDA 13.x >= 580, 12.x >= 525)
CUDA_DRIVER = {"12": 525, "13": 580}


def nvidia_driver():
    """(whether this machine has an NVIDIA GPU and driver, the driver's version or None): the
    kernel module's /proc file, a device node, or nvidia-smi; nothing is run."""
    try:
        with open("/proc/driver/nvidia/version") as f:
            m = re.search(r"\s(\d{3,}\.\d+(?:\.\d+)?)\s", f.read())
        return True, m[1] if m else None
    except OSError:
        return os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi") is not None, None


def arch_supported(capability, arch_list):
    """Whether a torch build for `arch_list` (torch.cuda.get_arch_list()) has kernels for a GPU of
    compute capability (major, minor): a cubin sm_XY runs on the same major at minor Y or above, PTX
    compute_XY is compiled for XY or above (CUDA C++ Programming Guide, binary and PTX compatibility)."""
    cc = 10 * capability[0] + capability[1]
    for arch in arch_list:
        kind, _, num = arch.partition("_")
        code = int(re.sub(r"\D", "", num) or 0)
        if kind == "sm" and code // 10 == cc // 10 and code <= cc or kind == "compute" and code <= cc:
            return True
    return False


def why_no_cuda(torch):
    """Why torch cannot train on this machine's NVIDIA GPU, in words, or None where it has none."""
    present, driver = nvidia_driver()
    if not present:
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU build"
    need = CUDA_DRIVER.get(torch.version.cuda.split(".")[0])
    if driver and need and int(driver.split(".")[0]) < need:
        return (f"NVIDIA driver {driver} is older than the {need} that torch {torch.__version__}'s CUDA "
                f"{torch.version.cuda} needs")
    return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use the NVIDIA GPU"
            + (f" (driver {driver})" if driver else "") + ": its driver may not be loaded, or "
            "CUDA_VISIBLE_DEVICES hides it")


def gpu_unsupported(torch, index):
    """Why torch's build has no kernels for GPU `index`, or None where it has (or is not a CUDA
    build: ROCm's architectures are named otherwise)."""
    if torch.version.cuda is None:
        return None
    cc, arch = torch.cuda.get_device_capability(index), torch.cuda.get_arch_list()
    if not arch or arch_supported(cc, arch):
        return None
    return (f"{torch.cuda.get_device_name(index)} (compute capability {cc[0]}.{cc[1]}) is not among the GPUs "
            f"torch {torch.__version__} has kernels for ({' '.join(arch)})")


def resolve_device(name, tf32=False, deterministic=False):
    """--device's value as torch takes it: auto is cuda when torch sees a GPU it has kernels for,
    else cpu, said in one line (with the reason where the machine has an NVIDIA GPU); a CUDA
    device that torch cannot see or run on, and --tf32 where there is no TF32, are refused in one
    line, before any work."""
    import torch
    if deterministic and name != "cpu":
        # cuBLAS repeats its results only with a fixed workspace, read when its first handle is
        # made (torch docs, Reproducibility; cuBLAS docs, Results reproducibility)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    fix = "README, GPU"
    if name == "auto":
        seen = torch.cuda.is_available()
        why = gpu_unsupported(torch, 0) if seen else why_no_cuda(torch)
        if why or not seen:   # stderr: predict.py --json prints its result on stdout
            print(f"--device auto: {why + ' (' + fix + ')' if why else 'no CUDA device'}: running on the CPU",
                  file=sys.stderr, flush=True)
        name = "cuda" if seen and not why else "cpu"
    elif name.startswith("cuda"):
        if not re.fullmatch(r"cuda(:\d+)?", name):
            raise utils.UserError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
        if not torch.cuda.is_available():
            why = why_no_cuda(torch)
            raise utils.UserError(f"--device {name}: torch sees no CUDA device"
                                  + (f" ({why}; {fix})" if why else "") + " (use --device cpu)")
        index = int(name.partition(":")[2] or torch.cuda.current_device())
        n = torch.cuda.device_count()
        if index >= n:
            raise utils.UserError(f"--device {name}: torch sees {n} CUDA device{'s' * (n > 1)} (cuda:0"
                                  + (f" to cuda:{n - 1})" if n > 1 else ")"))
        why = gpu_unsupported(torch, index)
        if why:
            raise utils.UserError(f"--device {name}: {why}; install a torch build for it ({fix}) or use "
                                  f"--device cpu")
    if tf32 and not (name.startswith("cuda") and torch.cuda.get_device_capability(name)[0] >= 8):
        raise utils.UserError(f"--tf32: TF32 is a mode of NVIDIA GPUs of compute capability 8.0 or newer, "
                              f"and this run is on {name}"
                              + (f" ({torch.cuda.get_device_name(name)})" if name.startswith("cuda") else ""))
    return name


def cuda_numerics(tf32=False, deterministic=False):
    """torch's global settings for CUDA runs. TF32 off unless asked for: cuDNN runs fp32
    convolutions in TF32 by default on compute capability 8.0+ (torch docs, CUDA semantics,
    TensorFloat-32), which changes results. --deterministic: deterministic algorithms and no cuDNN
    autotuning (torch docs, Reproducibility); without it cuDNN picks its fastest convolutions, which
    may differ run to run. Set each time, so a run never inherits an earlier run's settings in the
    same process. warn_only: an op without a deterministic CUDA kernel warns instead of stopping a
    long run."""
    import torch
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
