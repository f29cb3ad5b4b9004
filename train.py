"""
Leave-one-subject-out (LOSO) training and evaluation of SSSN / DSSN.

    python train.py --model DSSN                       # built-in synthetic demo, no dataset needed
    python train.py --path CASME2-coding-20140508.xlsx --img_root CASME2_RAW --catego CASME \\
        --image_mode F G --model DSSN --weight_save_path runs/casme_dssn

A fresh model is trained per held-out subject and scored with its last-epoch weights (the headline
figures never pick an epoch on test data). `--recipe keras` (default) trains as the authors' Keras 2
code did (batch order, Adam's counter carried across folds, he_normal biases, clipped cross-entropy);
`--recipe pytorch` is the port-style alternative (shuffled batches, a fresh torch Adam per fold).
Metrics pool the predictions of all folds. Each finished fold is saved at once, so rerunning the same
command resumes; `--subjects` runs some folds only (for job arrays), and the summary is written when
the last fold lands or with `--summarize RUN_DIR`. `--seeds 0 1 2 3 4` runs it all once per seed into
RUN/seed<N>/, with the mean and sd over seeds in RUN/summary.json.
`--protocol lodo` on a composite holds out one dataset per fold instead (cross-dataset):

    python train.py --catego COMPOSITE --parts CASME SAMM --protocol lodo \\
        --path CASME2-coding-20140508.xlsx SAMM_Micro_FACS_Codes_v2.xlsx --img_root CASME2_RAW SAMM
Outputs in --weight_save_path (runfolder.py): summary.json, predictions.csv, confusion_matrix.png,
learning_curves.png, train.log. The test subjects are also scored after every epoch: summary.json's
per_epoch, and authors_protocol (the epoch with the best pooled authors' F1, picked on test data as
the authors did, for comparison with the paper only).
"""
import argparse
import contextlib
import hashlib
import os
import sys
import time
import zlib

import numpy as np
import torch

import caches
import dataloader as dl
import datasets
import flags
import network
from network import FORMATS, build_model, count_parameters, load_pretrained, read_pretrained, weights_format
import preprocess as pp
import recipes
import runfolder
import utils

# The authors' settings (ME_Autoencoders train_multi_stream.py): Adam lr 1e-4, batch 60, 100 epochs.
PAPER = dict(batch_size=60, learning_rate=1e-4, epochs=100)
# The demo has 40 training samples a fold: batch 60 would give one optimiser step per epoch,
# so it trains with more, smaller steps (see README).
DEMO = dict(batch_size=10, learning_rate=1e-3, epochs=8)
# --final trains one model on every sample: these flags would be silently ignored
NOT_FINAL = ("subjects", "shard", "save_weights", "protocol", "seeds")


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    flags.data(data, sheet="--path", root="--img_root", demo=True)
    data.add_argument("--protocol", default="loso", choices=list(dl.PROTOCOLS),
                      help="loso: leave one subject out; lodo: leave one dataset of a composite out")
    data.add_argument("--demo_dir", default="demo", help="where the demo dataset is built")
    m = p.add_argument_group("model and training")
    models = network.MODELS.values()
    m.add_argument("--model", default="DSSN", choices=list(network.MODELS), help="; ".join(
        f"{d.name}: {d.help} ({d.streams_text()} stream{'s' * (d.streams != (1, 1))}, default "
        f"--image_mode {' '.join(d.modes)})" for d in models) + " (network.py)")
    m.add_argument("--image_mode", nargs="+", default=None,
                   help="one per stream: F, S or G, the third channel of a 227x227 (u, v, X) image; O, "
                   "STSTNet's 28x28 (u, v, strain) image")
    fusions = list(dict.fromkeys(f for d in models for f in d.fusions))
    m.add_argument("--combination_mode", default=None, choices=fusions,
                   help="fusion of the streams, for the networks that have one; default each one's own "
                   + ", ".join(f"({d.name} {d.fusion})" for d in models if d.fusions))
    m.add_argument("--recipe", default=None, choices=recipes.RECIPES,
                   help="keras (default; STSTNet: plain): as the authors' Keras 2 code trained (batches in "
                   "subject and sheet order, Keras' Adam with its step counter carried across folds, "
                   "he_normal biases, clipped cross-entropy); pytorch: shuffled batches, a fresh torch Adam "
                   "per fold, zero biases, plain cross-entropy; plain: torch's Adam at a fixed lr, batches "
                   "class by class, torch's default initialisation, plain cross-entropy (STSTNet's script)")
    m.add_argument("--batch_order", default=None, choices=recipes.ORDERS,
                   help="the unshuffled recipes' batch order: subject (keras's default: the authors'), sheet "
                   "(the samples' order), class (plain's default: class by class, as STSTNet's main.py "
                   "batches its label folders)")
    m.add_argument("--batch_size", type=utils.positive_int,
                   help=f"default {PAPER['batch_size']} (demo {DEMO['batch_size']})")
    m.add_argument("--epochs", type=utils.positive_int,
                   help=f"default {PAPER['epochs']} (demo {DEMO['epochs']})")
    m.add_argument("--learning_rate", type=utils.positive_float,
                   help=f"default {PAPER['learning_rate']} (demo {DEMO['learning_rate']})")
    m.add_argument("--pretrained", default="none",
                   help="ImageNet AlexNet conv1/conv2: the authors' Keras 1 "
                   "alexnet_weights.h5, bvlc_alexnet.npy, "
                   "bvlcalexnet-*.onnx or a state dict (the port's partial.pt); or none")
    seeds = m.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=utils.nonneg_int, default=0)
    seeds.add_argument("--seeds", nargs="+", type=utils.nonneg_int, metavar="SEED",
                       help="the whole run once per seed, into RUN/seed<N>/ (each what --seed N gives); "
                       "RUN/summary.json: mean and sd over the seeds")
    m.add_argument("--shuffle_labels", action="store_true",
                   help="control: permute labels within each subject; scores should fall to chance")
    flags.device(m)
    flags.preprocessing(p.add_argument_group("preprocessing (missing caches are built first)"))
    r = p.add_argument_group("run folder")
    r.add_argument("--weight_save_path", help="run folder (default runs/<catego>_<model>_<modes>)")
    r.add_argument("--new", action="store_true", help="if the run folder exists, use a new one beside it")
    r.add_argument("--subjects", nargs="+", help="run only these held-out subjects' folds "
                   "(--protocol lodo: these held-out datasets)")
    r.add_argument("--shard", metavar="I/N", type=utils.shard,
                   help="run every N-th fold starting at the I-th (1-based), e.g. a SLURM array task's share")
    r.add_argument("--save_weights", action="store_true", help="also save each fold's model")
    r.add_argument("--summarize", metavar="RUN_DIR",
                   help="only write the summary of a run folder (takes no other flag but --partial)")
    r.add_argument("--partial", action="store_true",
                   help="with --summarize: summarize a run that lacks folds (or seeds) from those there "
                   "are, marked partial on screen and in summary.json")
    r.add_argument("--final", action="store_true",
                   help="train one model on all subjects (no held-out subject, no metrics) into final.pt")
    return p


def refuse_unused(args, p):
    """--summarize and --final: a flag that cannot apply to them is refused, not silently ignored."""
    given = [k for k, v in vars(args).items() if v != p.get_default(k)]
    if args.partial and not args.summarize:
        raise utils.UserError("--partial goes with --summarize RUN_DIR (a run itself summarizes only once "
                              "every fold is done)")
    if args.summarize:
        extra = [k for k in given if k not in ("summarize", "partial")]
        if extra:
            raise utils.UserError(f"--{extra[0]} cannot apply to --summarize, which only summarizes "
                                  f"the fold files of {args.summarize}")
    elif args.final:
        extra = [k for k in given if k in NOT_FINAL]
        if extra:
            raise utils.UserError(f"--{extra[0]} cannot apply to --final, which trains one model on "
                                  f"every sample (no folds)")


def resolve_amp(device, amp):
    """--amp's value: auto is bf16 on a GPU with native bf16, else none; bf16 where it is not
    native is refused before any work."""
    if amp == "auto":
        amp = "bf16" if device.startswith("cuda") and native_bf16(device)[0] else "none"
    if amp == "bf16" and not native_bf16(device)[0]:
        raise utils.UserError(f"--amp bf16: {native_bf16(device)[1]}; use --amp none (fp32)")
    return amp


def resolve_network(args, net):
    """--image_mode and --combination_mode against the network's declaration (network.MODELS):
    its defaults filled in, what it cannot take refused in one line before any work."""
    args.image_mode = args.image_mode or list(net.modes)
    for m in args.image_mode:
        if m in pp.MODES and pp.stream_size(m) != net.size:
            fit = " ".join(k for k in pp.MODES if pp.stream_size(k) == net.size)
            raise datasets.DataError(f"--image_mode {m}: {args.model} takes {net.size}x{net.size} streams "
                                     f"({fit}); {m} is {pp.stream_size(m)}x{pp.stream_size(m)}")
    if not net.takes(len(args.image_mode)):
        raise datasets.DataError(f"--image_mode {' '.join(args.image_mode)}: {args.model} takes "
                                 f"{net.streams_text()} stream{'s' * (net.streams != (1, 1))}, one mode each "
                                 f"(e.g. --image_mode {' '.join(net.modes)})")
    if not net.fusions and args.combination_mode:
        raise datasets.DataError(f"--combination_mode {args.combination_mode}: {args.model} fuses no streams")
    if net.fusions:
        args.combination_mode = args.combination_mode or net.fusion
        if args.combination_mode not in net.fusions:
            raise datasets.DataError(f"--combination_mode {args.combination_mode}: {args.model} takes "
                                     f"{', '.join(net.fusions)}")
    if args.pretrained != "none" and not net.pretrained:
        raise datasets.DataError(f"--pretrained: {args.model} has no AlexNet conv1/conv2 to fill "
                                 f"(use --pretrained none)")


def resolve(args):
    """Fill defaults that depend on the dataset (paper settings) or the demo."""
    # device and precision first: a request this machine cannot honour is refused before any work
    args.device = flags.resolve_device(args.device, args.tf32, args.deterministic)
    args.amp = resolve_amp(args.device, args.amp)
    if args.path is None and args.img_root is None:
        import make_demo
        sheet = os.path.join(args.demo_dir, make_demo.SHEET)
        if not os.path.isfile(sheet):
            print(f"building the synthetic demo dataset in {args.demo_dir}/ (once)")
            sheet = make_demo.build_demo(args.demo_dir)
        args.path, args.img_root, args.catego = sheet, args.demo_dir, "CASME"
        args.demo = True
        print("*** running the SYNTHETIC DEMO (astronaut photo + landmark-driven micro-movements), "
              "not a real dataset ***")
    else:
        args.demo = False
        if args.img_root is None:
            raise datasets.DataError("--img_root is required with --path")
        if args.path is None and datasets.DATASETS[args.catego].get("sheet", True) is not None:
            raise datasets.DataError(f"--path (the coding sheet) is required for --catego {args.catego}")
    net = network.MODELS[args.model]
    for k, v in ((DEMO if args.demo else PAPER | net.defaults) | {"recipe": net.recipe}).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    resolve_network(args, net)
    if args.batch_order is not None and recipes.SHUFFLED[args.recipe]:
        raise utils.UserError(f"--batch_order {args.batch_order}: --recipe {args.recipe} shuffles the "
                              f"batches every epoch")
    args.batch_order = args.batch_order or recipes.ORDER[args.recipe]
    spec = datasets.DATASETS[args.catego]
    if args.protocol == "lodo" and not ("parts" in spec or spec.get("flows")):
        raise datasets.DataError("--protocol lodo holds out one dataset of a composite: "
                                 "it needs --catego COMPOSITE (or FLOWS with several datasets), "
                                 f"not {args.catego}")
    tag = "demo" if args.demo else args.catego
    # another --demo_dir caches apart from the default demo's, in a folder named by its path
    demo = "demo" if os.path.normpath(args.demo_dir) == "demo" else \
        "demo-" + hashlib.sha256(os.path.abspath(args.demo_dir).encode()).hexdigest()[:8]
    # composite: <prefix>_<subject>/
    args.cache_dir = args.cache_dir or os.path.join("cache", demo if args.demo else tag)
    if args.parts:
        tag += "-" + "+".join(args.parts)
    if args.protocol != "loso":
        tag += "_" + args.protocol
    name = f"{tag}_{args.model}_{''.join(args.image_mode)}" \
        + (f"_{args.combination_mode}" if args.combination_mode else "") \
        + ("_shuffled" if args.shuffle_labels else "") + ("_final" if args.final else "")
    args.weight_save_path = args.weight_save_path or os.path.join("runs", name)
    return args


# ---------------------------------------------------------------------------------------------
# the training loop (bench.py times it as it is)

def setup_device(device, tf32=False, deterministic=False):
    """torch's settings for training on `device` (train.py and bench.py): on a GPU fp32 is fp32
    unless `tf32`, and cuDNN picks its fastest convolutions unless `deterministic`
    (flags.cuda_numerics); on CPU the results are bit-identical run to run."""
    if device.startswith("cuda"):
        flags.cuda_numerics(tf32, deterministic)
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False   # a debug aid, ~2 % of a step


def fold_seed(seed, subject):
    # Each fold's randomness depends only on (seed, subject): resumed, sharded and full runs agree.
    return (seed * 1_000_003 + zlib.crc32(str(subject).encode())) % 2**31


def native_bf16(device):
    """(True, "") where bf16 autocast runs natively on `device`, else (False, why): the one check
    train.py and bench.py use. CPU: torch's own gate for oneDNN's bf16 kernels
    (torch.ops.mkldnn._is_mkldnn_bf16_supported: oneDNN's ISA detection, AVX-512 or newer), which
    reads CPUID and runs no bf16 instruction. Without it autocast falls back to emulated bf16
    kernels, 10-100x slower than fp32 (docs/performance.md). CUDA: compute capability 8.0+, of
    `device` itself (torch.cuda.is_bf16_supported answers for the current device)."""
    if device.startswith("cuda"):
        ok = torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
        return ok, "" if ok else f"{device} has no native bf16 (needs compute capability 8.0 or newer)"
    try:
        ok = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):   # a torch build without oneDNN
        ok = False
    isa = torch.backends.cpu.get_cpu_capability()
    return ok, "" if ok else (f"this CPU ({isa}) has no native bf16 in oneDNN, so bf16 would be "
                              f"emulated 10-100x slower than fp32")


def autocast(device, amp):
    if amp == "bf16":
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def predict(model, streams, idx, args):
    """Softmax probabilities of the samples `idx` (a device tensor), in eval mode and the run's
    autocast, kept on the device (no sync). Used after every epoch and for the final scores."""
    model.eval()
    with torch.no_grad(), autocast(args.device, args.amp):
        return torch.cat([model(*[s[idx[i:i + 256]].permute(0, 3, 1, 2) for s in streams]).float().softmax(1)
                          for i in range(0, len(idx), 256)]) if len(idx) else \
            torch.zeros(0, args.num_classes, device=idx.device)


def train_fold(streams, y, train_idx, test_idx, args, seed, pretrained=None, epoch_probs=None, start_step=0):
    """Train a fresh model on train_idx, return softmax probabilities on test_idx (last epoch).
    With a list as `epoch_probs`, the test samples are also scored after every epoch (the
    authors' protocol needs it) and each epoch's probabilities are appended to it; evaluation
    draws no random numbers, so training and the last epoch's scores are unchanged by it.
    Recipe keras: batches in train_idx's order every epoch, KerasAdam from `start_step`; plain:
    batches in train_idx's order, torch's Adam at a fixed lr; pytorch: shuffled, Adam with decay."""
    recipe = getattr(args, "recipe", None) or "keras"
    device = args.device
    torch.manual_seed(seed)
    model = build_model(args.model, args.num_classes, args.combination_mode,
                        init=recipes.INIT[recipe], streams=len(streams))
    if pretrained is not None:
        load_pretrained(model, pretrained)
    model = model.to(device, memory_format=torch.channels_last)
    opt, sched = recipes.optimizer(recipe, model.parameters(), args.learning_rate, start_step)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = recipes.loss(recipe)
    tr = torch.as_tensor(train_idx, device=device)
    te = torch.as_tensor(test_idx, device=device)
    batch = lambda idx: [s[idx].permute(0, 3, 1, 2) for s in streams]   # NHWC gather -> channels_last
    losses, per_epoch = [], []
    bar = utils.progress(range(args.epochs), "train", unit="epoch")
    for _ in bar:
        model.train()
        perm = tr[torch.randperm(len(tr), generator=gen).to(device)] if recipes.SHUFFLED[recipe] else tr
        total = torch.zeros((), device=device)
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i:i + args.batch_size]
            with autocast(device, args.amp):
                loss = loss_fn(model(*batch(idx)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched:
                sched.step()
            total += loss.detach() * len(idx)   # stays on the device: no sync per step
        losses.append(total)
        bar.set_postfix(loss=f"{float(total) / len(tr):.3f}")   # one host sync per epoch, none per step
        if epoch_probs is not None and len(te):
            per_epoch.append(predict(model, streams, te, args))
    probs = per_epoch[-1] if per_epoch else predict(model, streams, te, args)
    if epoch_probs is not None:
        epoch_probs.extend(p.cpu().numpy() for p in per_epoch)
    return probs.cpu().numpy(), [float(l) / len(tr) for l in torch.stack(losses).cpu()], model


# ---------------------------------------------------------------------------------------------
# a LOSO (or LODO) run: load, the folds, the summary

def shuffle_within_subjects(data, seed):
    """The --shuffle_labels control. Within each subject, not over all samples: with balanced
    subjects a global shuffle pushes LOSO below chance (the held-out labels are then
    anti-correlated with training)."""
    rng = np.random.default_rng(seed)
    for s in np.unique(data.subjects):
        i = np.flatnonzero(data.subjects == s)
        data.y[i] = data.y[rng.permutation(i)]


def read_data(args):
    """(samples, config, pretrained weights or None): the data, checked before any work."""
    samples = dl.read_samples(args.path, args.img_root, args.catego, args.num_classes, args.classes,
                              args.parts)
    args.num_classes = len(samples.classes)
    field = dl.PROTOCOLS[args.protocol][0][:-1]   # "subject" / "dataset"
    held_out = sorted(set(samples.table[field]))
    if len(held_out) < 2 and not args.final:   # its one fold would train on nothing
        raise datasets.DataError(f"--protocol {args.protocol} holds out one {field} a fold and trains on the "
                                 f"others: the data has 1 {field} ({held_out[0]})")
    # read (and checked) once, copied into every fold's fresh model
    pretrained = None if args.pretrained == "none" else read_pretrained(args.pretrained)
    return samples, runfolder.run_config(args, samples), pretrained


def load(args, samples, log):
    """dataloader's streams of the data; missing caches are built first."""
    log(datasets.describe(samples))
    dl.check_modes(samples, args.image_mode)   # before any preprocessing
    failures = caches.build_caches(samples, args.cache_dir, args.encoding, args.face, args.workers,
                                flow=args.flow)
    if failures:
        log(caches.failure_table(failures))
        raise datasets.DataError(f"{len(failures)} samples could not be preprocessed (see above)")
    data = dl.load_streams(samples, args.cache_dir, args.image_mode, args.encoding, args.face, args.flow)
    if args.shuffle_labels:
        shuffle_within_subjects(data, args.seed)
        log("labels permuted within each subject (control run)")
    return data


def describe(args, config, pretrained, log):
    """The model and how it is trained, in two lines of train.log."""
    model = build_model(args.model, args.num_classes, args.combination_mode, streams=len(args.image_mode))
    log(f"{args.model} {' '.join(args.image_mode)}"
        + (f" fusion {args.combination_mode}" if args.combination_mode else "")
        + f", {count_parameters(model):,} parameters, on {args.device}"
        + (" with bf16 autocast" if args.amp == "bf16" else "")
        + ((", TF32" if args.tf32 else ", fp32 without TF32" if args.amp == "none" else "")
           + (", deterministic" if args.deterministic else "") if args.device.startswith("cuda") else "")
        + f"; recipe {args.recipe}, batch {args.batch_size}"
        + ("" if recipes.SHUFFLED[args.recipe] else f" in {args.batch_order} order")
        + f", lr {args.learning_rate}, {args.epochs} epochs, seed {args.seed}"
        + (" (demo settings)" if args.demo else " (its publication's settings unless given)"
           if network.MODELS[args.model].defaults else " (authors' settings unless given)"))
    init = {"keras": "Keras he_normal", "pytorch": "port-style He-normal",
            "plain": "torch's default"}[args.recipe]
    if network.MODELS[args.model].pretrained:
        log("conv1/conv2: " + (f"pretrained from {args.pretrained} "
                               f"({FORMATS[weights_format(args.pretrained)]}, "
                               f"sha256 {config['pretrained']})" if pretrained else
                               f"{init} initialisation (no --pretrained file; the authors used "
                               f"ImageNet AlexNet)"))
    else:
        log(f"{init} initialisation")


def plan(args, data):
    """(what is held out, every fold, this process's folds, Adam's start step of each fold):
    folds as (held out, train indices, test indices), loso one per subject, lodo per dataset."""
    field, split = dl.PROTOCOLS[args.protocol]
    splits = list(split(getattr(data, field)))
    # The authors' one Adam object serves every fold in turn, so its counter runs on: fold k starts
    # at the steps of the folds before it in split order. From split sizes alone, so --subjects,
    # --shard and resumed runs start each fold where the full run does. Keras' fit keeps the last,
    # shorter batch: epochs x ceil(n_train / batch) steps a fold.
    steps = [args.epochs * -(-len(tr) // args.batch_size) * recipes.CARRIES_STEPS[args.recipe]
             for _, tr, _ in splits]
    start = {s: int(sum(steps[:k])) for k, (s, _, _) in enumerate(splits)}
    mine = splits
    if args.subjects:
        unknown = set(args.subjects) - {s for s, _, _ in splits}
        if unknown:
            raise datasets.DataError(f"--subjects {' '.join(sorted(unknown))}: not in the data "
                                     f"({field}: {' '.join(s for s, _, _ in splits)})")
        mine = [s for s in splits if s[0] in args.subjects]
    if args.shard:
        i, n = args.shard
        mine = mine[i - 1::n]
    return field[:-1], splits, mine, start


def run_fold(args, run, what, held_out, train_idx, test_idx, start_step, data, classes, streams, y,
             pretrained, config=None):
    """Train and score one fold, write its fold file (and model); the fold file's dict. With
    `config`, the folder must still have it when the fold is written (runfolder.check_config)."""
    t0 = time.time()
    epochs = []
    train_idx = recipes.order(args.batch_order, train_idx, data.subjects, data.y)
    probs, losses, model = train_fold(streams, y, train_idx, test_idx, args, fold_seed(args.seed, held_out),
                                      pretrained, epoch_probs=epochs, start_step=start_step)
    if config is not None:
        runfolder.check_config(run, config)
    if args.save_weights:   # on the CPU, as final.pt: a GPU's tensors would load only where there is one
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        utils.atomic_write(runfolder.fold_path(run, held_out, ".pt"), lambda f: torch.save(state, f))
    return runfolder.write_fold(run, what, held_out, seconds=round(time.time() - t0, 2), train_loss=losses,
                                rows=runfolder.prediction_rows(data, test_idx, probs, classes),
                                optimizer_start_step=start_step,
                                epoch_predictions=[p.argmax(1).tolist() for p in epochs])


def main_run(args):
    samples, config, pretrained = read_data(args)
    run = args.weight_save_path = runfolder.open_run(args.weight_save_path, config, args.new)
    with runfolder.Log(os.path.join(run, "train.log")) as log:
        return train_run(args, samples, config, pretrained, run, log)


def train_run(args, samples, config, pretrained, run, log):
    """The folds of this process into the run folder, then the summary if every fold is done."""
    data = load(args, samples, log)
    setup_device(args.device, args.tf32, args.deterministic)
    streams = [torch.from_numpy(s).to(args.device) for s in data.x]   # the whole dataset, once, on the device
    y = torch.from_numpy(data.y).to(args.device)
    describe(args, config, pretrained, log)
    if args.final:
        return train_final(args, run, log, samples, data, streams, y, pretrained, config)
    what, splits, mine, start = plan(args, data)
    # A fold file that cannot be read (cut short, zero-length) is not done: it is trained again, which
    # gives what it held (a fold depends only on the seed, its subject and the data, checked above).
    finished = lambda s: runfolder.read_fold(runfolder.fold_path(run, s))[0] is not None
    todo = [s for s, _, _ in mine if not finished(s)]
    spent = []   # seconds of each fold trained by this process: the time left is their mean x folds to go
    for k, (held_out, train_idx, test_idx) in enumerate(mine):
        if finished(held_out):
            log(f"fold {k + 1}/{len(mine)} {what} {held_out}: done earlier, kept")
            continue
        if os.path.exists(runfolder.fold_path(run, held_out)):
            log(f"{runfolder.fold_path(run, held_out)}: cannot be read, trained again")
        fold = run_fold(args, run, what, held_out, train_idx, test_idx, start[held_out], data,
                        samples.classes, streams, y, pretrained, config)
        losses = fold["train_loss"]
        acc = np.mean([r["label"] == r["prediction"] for r in fold["rows"]])
        spent.append(fold["seconds"])
        left = np.mean(spent) * (len(todo) - len(spent))
        log(f"fold {k + 1}/{len(mine)} {what} {held_out}: {len(test_idx)} test, acc {acc:.3f}, "
            f"train loss {losses[0]:.3f} -> {losses[-1]:.3f}, {fold['seconds']:.1f}s"
            + (f", about {left / 60:.0f} min left" if left >= 90
               else f", about {left:.0f}s left" if left else ""))
    done, unreadable = runfolder.read_folds(run, config)   # this process's and other shards'
    for path, why in unreadable.items():
        log(f"{path}: cannot read fold file ({why}): not counted as finished")
    if len(done) < len(splits):
        log(f"{len(done)} of {len(splits)} folds finished in {run}; the summary is written when the last "
            f"one lands (or, marked partial: python train.py --summarize {run} --partial)")
        return 0
    runfolder.summarize(run, log)
    return 0


def input_settings(samples, args):
    """What the streams were made from, as final.pt records it for predict.py: {face mode: the
    settings of flow computed from frames} or, for flow files (FLOWS), {kind: pp.file_settings}
    ("float": u, v in pixels, encoded as computed flow; "image": 8-bit (u, v, strain) images,
    min-max scaled per image and enlarged with nearest neighbours), never the frame settings of
    a flow that was not computed here."""
    t = samples.table
    if "flow_kind" in t:
        out = {k: pp.file_settings(k, args.encoding) for k in sorted(set(t.flow_kind))}
        if "image" in out:   # the side a new clip's flow image is made at (the composite's: 28)
            sizes = {pp.read_flow(f)[1].shape[:2] for f in t.flow_path[t.flow_kind == "image"]}
            out["image"] |= dict(scaling="u, v, strain min-max scaled per image and channel",
                                 image_size=sorted(map(list, sizes)))
        return out
    faces = sorted(set(t.face)) if args.face == "auto" else [args.face]
    return {f: pp.settings(f, args.encoding, args.flow) for f in faces}


def train_final(args, run, log, samples, data, streams, y, pretrained, config=None):
    """One model on every sample, saved with all that predict.py needs to use it."""
    t0 = time.time()
    # Adam's counter starts at 0: no fold comes before this model (the authors trained none like it)
    idx = np.arange(len(data.y))
    idx = recipes.order(args.batch_order, idx, data.subjects, data.y)
    _, losses, model = train_fold(streams, y, idx, np.arange(0), args, args.seed, pretrained)
    ckpt = dict(state_dict={k: v.cpu() for k, v in model.state_dict().items()}, model=args.model,
                num_classes=args.num_classes, combination_mode=args.combination_mode, recipe=args.recipe,
                batch_order=args.batch_order,
                image_mode=args.image_mode, classes=samples.classes, catego=args.catego, parts=args.parts,
                preprocess=input_settings(samples, args),
                train_loss=losses, samples=int(len(data.y)), subjects=sorted(set(data.subjects.tolist())),
                sample_ids=[datasets.sample_id(r) for r in samples.table.to_dict("records")])
    path = os.path.join(run, "final.pt")
    if config is not None:
        runfolder.check_config(run, config)
    utils.atomic_write(path, lambda f: torch.save(ckpt, f))
    log(f"final model on all {len(data.y)} samples of {len(ckpt['subjects'])} subjects "
        f"(train loss {losses[0]:.3f} -> {losses[-1]:.3f}, {time.time() - t0:.1f}s): {path}; "
        f"no held-out subject, so no metrics")
    return 0


def run_seeds(args):
    """--seeds: the whole protocol once per seed, each an ordinary run folder RUN/seed<N>/ (what
    --seed N --weight_save_path RUN/seed<N> gives, so resume, --subjects and --shard work per
    seed), then RUN/summary.json from the seeds' summaries once every seed has one."""
    top = args.weight_save_path
    top = runfolder.beside(top) if args.new and os.path.exists(top) else top
    if os.path.isfile(os.path.join(top, "config.json")):
        raise datasets.DataError(f"{top} is a one-seed run folder: give --seeds another --weight_save_path, "
                                 f"or --new")
    for s in args.seeds:
        main_run(argparse.Namespace(**vars(args) | dict(seed=s, seeds=None, new=False,
                                                        weight_save_path=os.path.join(top, f"seed{s}"))))
    with runfolder.Log(os.path.join(top, "train.log")) as log:
        missing = [s for s in args.seeds if not runfolder.whole(os.path.join(top, f"seed{s}"))]
        if missing:
            log(f"seeds {' '.join(map(str, missing))} are not finished; {top}/summary.json is written when "
                f"the last one lands (or, marked partial: python train.py --summarize {top} --partial)")
            return 0
        runfolder.summarize_seeds(top, log)
    return 0


def run(args, p):
    refuse_unused(args, p)
    if args.summarize:
        runfolder.summarize(args.summarize, partial=args.partial)
        return 0
    args = resolve(args)
    return run_seeds(args) if args.seeds else main_run(args)


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    return utils.cli(lambda: run(args, p),
                     "interrupted: finished folds are kept; rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
