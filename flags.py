"""
The flags that several scripts take, each defined once (name, type, range check, help), and the
resolution of --device.

    p = argparse.ArgumentParser()
    flags.data(p, sheet="--path", root="--img_root")   # the dataset; the other spelling is accepted too
    flags.preprocessing(p)                             # --cache_dir --face --encoding --flow --workers
    flags.device(p)                                    # --device, --amp
    args.device = flags.resolve_device(args.device)    # auto -> cuda or cpu; an absent GPU refused

The sheet and the dataset folder have two spellings: `--path` / `--img_root` (train.py's, the command
line of Justin900429's PyTorch port) and `--csv_path` / `--root` (save_preprocess_weight.py's). Every
script takes both; `sheet` and `root` say which one its help shows first, and the attribute is named
after it.
"""
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
    """--device (see resolve_device) and, with `amp`, the mixed precision --amp."""
    p.add_argument("--device", default=default, help="auto (cuda if available), cpu, cuda, cuda:1")
    if amp:
        p.add_argument("--amp", default="auto", choices=["auto", "none", "bf16"],
                       help="mixed precision; auto = bf16 on a GPU with native bf16, else none (fp32); "
                       "bf16 where it is not native is refused")


def resolve_device(name):
    """--device's value as torch takes it: auto is cuda when torch sees a GPU, else cpu; a CUDA
    device that torch cannot see is refused in one line, before any work."""
    import torch
    name = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise utils.UserError(f"--device {name}: torch sees no CUDA device (use --device cpu)")
    return name
