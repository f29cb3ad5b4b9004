"""
Throughput benchmark of SSSN / DSSN training, inference and preprocessing, on synthetic inputs of
the real shapes (uint8 0..255, 3 channels a stream, 227x227), on whatever device it finds.

    python bench.py --json out.json                   # everything: ~1.5 min on a 2-core CPU
    python bench.py --quick --skip_preprocess         # a short subset (what tests/test_bench.py runs)
    python bench.py --device cuda --batch 60          # auto (default) picks cuda when there is one
    python bench.py --profile bf16                    # + torch.profiler table of DSSN mul steps

What is timed (DSSN mul, fp32, batch 60 unless a name says otherwise; median of the timed repeats
after warm-up, min-max shown as the spread):
  train_samples_per_s     train.py's own loop: train.train_fold, unchanged, on a synthetic fold held in
                          memory as train.py holds it (uint8 NHWC tensors on the device, gathered per
                          batch). Epoch boundaries are read with torch's global module / optimizer
                          hooks, so nothing in train.py is patched.
  infer_samples_per_s     the model train_fold returned, evaluated as train_fold evaluates (no_grad,
                          autocast, gather per batch, softmax), batches of --batch.
  train_gflops            analytic conv + linear FLOPs of a training step (see `flops`) / step time.
  peak_gflops             the same device's best large matrix product (fp32; *_bf16 for bf16): the
                          fastest repeat of torch.mm (MKL / cuBLAS) and of the same GEMM as a 1x1
                          convolution (oneDNN / cuDNN, which run the model's convs; on this AMD CPU
                          oneDNN beats MKL's sgemm by ~20%). A practical ceiling, not a datasheet one.
  data_overhead           the share of train_fold's epoch spent outside forward..optimiser step (the
                          per-batch gather, shuffling, loss bookkeeping), timed inside the same run:
                          1 - sum(forward start -> Adam step end) / epoch.
  data_overhead_vs_pure   1 - (pure steps on batches gathered beforehand) / (train_fold's epoch):
                          the same question from two separate runs, so load changes on a shared
                          machine move it by several % either way (the in-run figure is immune).
  preprocess_pairs_per_s  dataloader.build_caches (read 2 JPEGs, dlib alignment, TV-L1, features,
                          write the .npz) over a tiny make_demo dataset (astronaut photo with small
                          synthetic motion, 320x240 frames, 20 pairs), 1 worker process (OpenCV still
                          uses its own threads inside TV-L1); *_all_cores with os.cpu_count() forked
                          worker processes (build_caches' real multiprocessing path).
Mixed precision is bf16 autocast (CPU and GPU). On CUDA every timing is bracketed by
torch.cuda.synchronize (also inside the hooks, so the loop loses its step-to-step overlap there),
cudnn.benchmark is on as in train.py, and fp32 convolutions may use TF32 (torch's default) while the
fp32 matmul peak does not. Other processes on the machine slow everything down (on 2 cores a second
busy process can make OpenMP steps 2-4x slower): the load average before and after, and the share
of the CPU time other processes took meanwhile (others_cpu_share), are printed and stored.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.optim.optimizer import register_optimizer_step_post_hook

import network
import preprocess as pp
import train

VARIANTS = [("SSSN", None), ("DSSN", "add"), ("DSSN", "mul"), ("DSSN", "cat")]
REFERENCE = ("DSSN", "mul")


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="FILE", help="also write the figures to this JSON file")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    p.add_argument("--batch", type=int, default=60, help="batch size (the authors' 60)")
    p.add_argument("--repeats", type=int, help="timed repeats (default 3, DSSN mul 5; --quick 2)")
    p.add_argument("--warmup", type=int, help="untimed epochs / batches first (default 2; --quick 1)")
    p.add_argument("--fold_samples", type=int, default=246,
                   help="samples held in memory, as a CASME II fold (246 in the 5-class set)")
    p.add_argument("--quick", action="store_true", help="DSSN mul only, fewer repeats, smaller matmul")
    p.add_argument("--skip_preprocess", action="store_true", help="no preprocessing benchmark")
    p.add_argument("--frame_size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"),
                   help="frame size of the preprocessing benchmark (the demo's 320x240)")
    p.add_argument("--profile", choices=["none", "fp32", "bf16"], default="none",
                   help="also print a torch.profiler table of DSSN mul training steps")
    p.add_argument("--seed", type=int, default=0)
    return p


# ---------------------------------------------------------------------------------------------
# FLOPs, counted by hand (a multiply-add is 2 FLOPs; biases, pools, ReLU, dropout, the fusion and
# the LRN's elementwise ops are not counted)

def conv_out(n, k, stride=1, pad=0):
    return (n + 2 * pad - k) // stride + 1


def flops(model="DSSN", mode="mul", num_classes=5, size=pp.SIZE):
    """{layer: (forward FLOPs of one sample, training multiple)} for all streams together.
    Training = forward + backward: 3x forward (output, input gradient, weight gradient), except
    conv1 (2x: its input is data, no input gradient) and the LRN band convolutions (2x: the band is
    a constant buffer, no weight gradient). The LRN band 1x1 convolutions are counted: they are
    real GEMMs in network.LRN (about 5% of the forward). DSSN mul: 1.389 GFLOP forward and 3.675
    GFLOP training a sample (counting the bands 3x like the other layers would give 3.746)."""
    c1 = conv_out(size, 11, 4)         # 55
    p1 = conv_out(c1, 3, 2)            # 27
    c2 = conv_out(p1, 5, 1, 2)         # 27
    p2 = conv_out(c2, 3, 2)            # 13
    streams = 1 if model == "SSSN" else 2
    out1, in1, k1, _ = network.CONV1_SHAPE          # 96, 3, 11, 11
    out2, in2_per_group, k2, _ = network.CONV2_SHAPE  # 256, 48, 5, 5
    per_stream = {
        "conv1": (2 * out1 * c1 * c1 * in1 * k1 * k1, 2),
        "lrn1_band": (2 * out1 * p1 * p1 * out1, 2),
        "conv2": (2 * out2 * c2 * c2 * in2_per_group * k2 * k2, 3),
        "lrn2_band": (2 * out2 * p2 * p2 * out2, 2),
    }
    layers = {k: (streams * f, m) for k, (f, m) in per_stream.items()}
    features = network.FEATURES * (2 if model == "DSSN" and mode == "cat" else 1)
    layers["fc"] = (2 * features * num_classes, 3)
    return layers


def forward_flops(model="DSSN", mode="mul", num_classes=5):
    return sum(f for f, _ in flops(model, mode, num_classes).values())


def train_flops(model="DSSN", mode="mul", num_classes=5):
    return sum(f * m for f, m in flops(model, mode, num_classes).values())


# ---------------------------------------------------------------------------------------------
# timing helpers

def syncer(device):
    if device.startswith("cuda"):
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def stats(values):
    """median, min, max (the spread) of timed repeats."""
    return statistics.median(values), min(values), max(values)


class LoopClock:
    """Timestamps inside train.train_fold, taken by torch's global hooks so train.py runs unchanged:
    `fwd` when a training forward of the top model starts (its batch already gathered), `opt` when
    optimizer.step returns, `eval` when the evaluation forward starts."""

    def __init__(self, device):
        self.sync = syncer(device)
        self.fwd, self.opt, self.eval = [], [], []

    def _now(self):
        self.sync()
        return time.perf_counter()

    def _forward(self, module, args):
        if isinstance(module, network.SSSN):
            (self.fwd if module.training else self.eval).append(self._now())

    def _step(self, optimizer, args, kwargs):
        self.opt.append(self._now())

    def __enter__(self):
        self.handles = [register_module_forward_pre_hook(self._forward),
                        register_optimizer_step_post_hook(self._step)]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False

    def epochs(self, batches):
        """(epoch seconds, seconds inside forward..optimiser step) per epoch of `batches` steps.
        An epoch is measured from the forward of its first batch to that of the next epoch's first
        batch (or the evaluation), so it holds exactly one epoch's gathers and bookkeeping."""
        bounds = self.fwd[::batches] + self.eval[:1]
        inside = [sum(o - f for f, o in zip(self.fwd[i:i + batches], self.opt[i:i + batches]))
                  for i in range(0, len(self.fwd), batches)]
        return [b - a for a, b in zip(bounds, bounds[1:])], inside


def make_args(model, mode, amp, device, batch, epochs):
    """train.py's own argument namespace (its parser's defaults) for train_fold."""
    argv = ["--model", model, "--amp", amp, "--device", device, "--batch_size", str(batch),
            "--epochs", str(epochs), "--learning_rate", str(train.PAPER["learning_rate"]),
            "--num_classes", "5"]
    if mode:
        argv += ["--combination_mode", mode]
    return train.parser().parse_args(argv)


class Fold:
    """A synthetic fold held as train.py holds it: streams = uint8 (N, 227, 227, 3) tensors on the
    device (dataloader.Streams.x[s], moved once), labels on the device, train/test indices."""

    def __init__(self, n_streams, n, n_train, n_test, device, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, (n_streams, n, pp.SIZE, pp.SIZE, 3), dtype=np.uint8)
        self.streams = [torch.from_numpy(s).to(device) for s in x]
        self.y = torch.from_numpy(rng.integers(0, 5, n).astype(np.int64)).to(device)
        order = rng.permutation(n)
        self.train_idx, self.test_idx = np.sort(order[:n_train]), np.sort(order[n_train:n_train + n_test])

    def batch(self, idx):
        return [s[idx].permute(0, 3, 1, 2) for s in self.streams]   # train_fold's gather


def bench_train(fold, args, warmup, seed=0):
    """train_fold as train.py runs it; returns (epoch times, inside times, trained model)."""
    batches = len(fold.train_idx) // args.batch_size
    with LoopClock(args.device) as clock:
        _, _, model = train.train_fold(fold.streams, fold.y, fold.train_idx, fold.test_idx, args, seed)
    epochs, inside = clock.epochs(batches)
    return epochs[warmup:], inside[warmup:], model


def bench_pure(fold, args, steps, warmup, seed=0):
    """train_fold's inner-loop body (forward, loss, zero_grad, backward, Adam step, schedule step)
    on batches gathered beforehand: the model, optimiser and schedule are built as train_fold builds
    them. Returns the seconds of each timed step."""
    device, sync = args.device, syncer(args.device)
    torch.manual_seed(seed)
    model = train.build_model(args.model, args.num_classes, args.combination_mode)
    model = model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1.0 + train.ADAM_DECAY * step))
    tr = torch.as_tensor(fold.train_idx, device=device)
    pre = [(fold.batch(tr[i:i + args.batch_size]), fold.y[tr[i:i + args.batch_size]])
           for i in range(0, len(tr) - args.batch_size + 1, args.batch_size)]
    model.train()
    times = []
    for k in range(warmup + steps):
        xb, yb = pre[k % len(pre)]
        sync()
        t = time.perf_counter()
        with train.autocast(device, args.amp):
            loss = F.cross_entropy(model(*xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        sync()
        times.append(time.perf_counter() - t)
    return times[warmup:], model, opt, sched, pre


def bench_infer(model, fold, args, steps, warmup):
    """train_fold's evaluation line, on batches of args.batch_size; seconds per batch."""
    device, sync = args.device, syncer(args.device)
    model.eval()
    te = torch.as_tensor(np.concatenate([fold.test_idx, fold.train_idx]), device=device)
    times = []
    for k in range(warmup + steps):
        i = (k * args.batch_size) % (len(te) - args.batch_size + 1)
        sync()
        t = time.perf_counter()
        with torch.no_grad(), train.autocast(device, args.amp):
            probs = model(*fold.batch(te[i:i + args.batch_size])).float().softmax(1)
        sync()
        times.append(time.perf_counter() - t)
    assert torch.isfinite(probs).all()
    return times[warmup:]


def gemm_gflops(device, dtype, n, reps, kind="mm"):
    """GFLOP/s of each repeat of a large matrix product: kind "mm" is torch.mm of n x n matrices
    (MKL on CPU, cuBLAS on CUDA); "conv1x1" the same product as a 1x1 convolution (oneDNN / cuDNN,
    the libraries that run the model's convolutions), M = n*n/8 pixels, K = N = n/4 channels."""
    sync, like = syncer(device), dict(device=device, dtype=dtype)
    if kind == "mm":
        a, b, c = torch.randn(n, n, **like), torch.randn(n, n, **like), torch.empty(n, n, **like)
        run, flop = (lambda: torch.mm(a, b, out=c)), 2 * n ** 3
    else:
        ch, side = n // 4, n // 64
        x = torch.randn(8, ch, side, side, **like).contiguous(memory_format=torch.channels_last)
        w = torch.randn(ch, ch, 1, 1, **like).contiguous(memory_format=torch.channels_last)
        run, flop = (lambda: F.conv2d(x, w)), 2 * 8 * side * side * ch * ch
    with torch.no_grad():
        run()
        times = []
        for _ in range(reps):
            sync()
            t = time.perf_counter()
            run()
            sync()
            times.append(time.perf_counter() - t)
    return [flop / s / 1e9 for s in times]


# ---------------------------------------------------------------------------------------------
# preprocessing

def bench_preprocess(frame_size, workers, seed=0, subjects=2, clips_per_class=2):
    """{workers: (pairs/s, pairs, seconds)} of dataloader.build_caches over a tiny make_demo
    dataset (subjects x 5 classes x clips_per_class onset/apex pairs), with 1 worker (in-process)
    and with `workers` forked processes. The parent has dlib's models loaded (make_demo used them),
    so forked workers share them, as in a long run where their loading is amortised."""
    import dataloader as dl
    import make_demo
    out = {}
    with tempfile.TemporaryDirectory(prefix="dssn-bench-") as tmp:
        root = os.path.join(tmp, "demo")
        sheet = make_demo.build_demo(root, subjects=subjects, clips_per_class=clips_per_class, seed=seed,
                                     size=tuple(frame_size))
        samples = dl.read_samples(sheet, root, "CASME")
        n = len(samples.table)
        for w in sorted({1, workers}):
            t = time.perf_counter()
            failures = dl.build_caches(samples, os.path.join(tmp, f"cache{w}"), "fixed", "dlib", w, quiet=True)
            dt = time.perf_counter() - t
            if failures:
                raise RuntimeError(f"preprocessing failed: {failures[:3]}")
            out[w] = (n / dt, n, dt)
    return out


# ---------------------------------------------------------------------------------------------

def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class CpuShare:
    """Share of the machine's CPU time used by other processes meanwhile (Linux /proc/stat), so a
    reader knows whether the figures were taken on a busy machine. None where unavailable."""

    @staticmethod
    def _read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        t = os.times()
        own = (t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK")
        return sum(v) - v[3] - v[4], sum(v), own

    def __init__(self):
        try:
            self.start = self._read()
        except (OSError, ValueError, AttributeError):
            self.start = None

    def others(self):
        if self.start is None:
            return None
        busy, total, own = (b - a for a, b in zip(self.start, self._read()))
        return max(0.0, (busy - own) / total) if total > 0 else None


def profile_steps(fold, args, steps=2):
    from torch.profiler import ProfilerActivity, profile
    _, model, opt, sched, pre = bench_pure(fold, args, 0, 2)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    with profile(activities=acts, record_shapes=True) as prof:
        for k in range(steps):
            xb, yb = pre[k % len(pre)]
            with train.autocast(args.device, args.amp):
                loss = F.cross_entropy(model(*xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        syncer(args.device)()
    sort = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
    print(f"\ntorch.profiler, {steps} DSSN mul training steps, {args.amp}, batch {args.batch_size}:")
    print(prof.key_averages().table(sort_by=sort, row_limit=25))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=25))


def main(argv=None):
    a = parser().parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    # as train.py's main_run sets them
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
    B = a.batch
    load_start, t_start, share = loadavg(), time.perf_counter(), CpuShare()
    info = dict(device=torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
                cpu=cpu_name(), torch=torch.__version__, threads=torch.get_num_threads(),
                cpu_count=os.cpu_count(), batch=B, quick=a.quick, loadavg_start=load_start)
    print(f"bench: {info['device']} ({info['cpu']}, {info['threads']} torch threads), torch {info['torch']}, "
          f"batch {B}, load average {load_start} at start", flush=True)

    variants = [REFERENCE] if a.quick else VARIANTS
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    n_rep = a.repeats or (2 if a.quick else 3)
    ref_rep = a.repeats or (2 if a.quick else 5)
    n_fold = max(a.fold_samples, 2 * B)
    folds = {}

    models, pure = {}, {}
    print(f"{'model':<10}{'prec':<6}{'train samples/s':>22}{'infer samples/s':>22}{'train GFLOP/s':>15}",
          flush=True)
    for model, mode in variants:
        name = model if mode is None else f"{model}-{mode}"
        n_streams = 1 if model == "SSSN" else 2
        if n_streams not in folds:
            folds[n_streams] = Fold(n_streams, n_fold, B, B, device, a.seed)
        fold = folds[n_streams]
        for amp in ("none", "bf16"):
            reps = ref_rep if (model, mode) == REFERENCE else n_rep
            args = make_args(model, mode or "mul", amp, device, B, warmup + reps)
            epochs, inside, trained = bench_train(fold, args, warmup, a.seed)
            infer = bench_infer(trained, fold, args, reps, warmup)
            del trained
            tr, inf = stats([B / s for s in epochs]), stats([B / s for s in infer])
            gf = tr[0] * train_flops(model, mode or "mul") / 1e9
            prec = "fp32" if amp == "none" else "bf16"
            models.setdefault(name, {})[prec] = dict(
                train_samples_per_s=tr[0], train_spread=[tr[1], tr[2]],
                infer_samples_per_s=inf[0], infer_spread=[inf[1], inf[2]], train_gflops=gf,
                epoch_seconds=epochs, infer_batch_seconds=infer,
                data_overhead=1 - sum(inside) / sum(epochs))
            print(f"{name:<10}{prec:<6}{tr[0]:>9.1f} ({tr[1]:5.1f}-{tr[2]:5.1f}){inf[0]:>9.1f} "
                  f"({inf[1]:5.1f}-{inf[2]:5.1f}){gf:>15.1f}", flush=True)
            if (model, mode) == REFERENCE:
                pure[prec] = bench_pure(fold, args, reps, warmup, a.seed)[0]

    # data path, second way: train.py's epoch (one batch) vs pure steps on batches gathered beforehand
    ref = models["DSSN-mul"]
    for prec, steps in pure.items():
        ref[prec]["pure_step_seconds"] = steps
        ref[prec]["data_overhead_vs_pure"] = 1 - statistics.median(steps) / statistics.median(ref[prec]["epoch_seconds"])

    n_mm = 8192 if device.startswith("cuda") else (1024 if a.quick else 2048)
    peak, gemm = {}, {}
    for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for kind in ("mm", "conv1x1"):
            gemm[f"{kind}_{prec}"] = stats(gemm_gflops(device, dtype, n_mm, 3 if a.quick else 5, kind))
        peak[prec] = max(gemm[f"mm_{prec}"][2], gemm[f"conv1x1_{prec}"][2])

    pre = None
    if not a.skip_preprocess:
        pre = bench_preprocess(a.frame_size, os.cpu_count() or 1, a.seed)

    load_end, others = loadavg(), share.others()
    res = dict(info)
    res.update(
        train_samples_per_s=ref["fp32"]["train_samples_per_s"],
        train_samples_per_s_bf16=ref["bf16"]["train_samples_per_s"],
        infer_samples_per_s=ref["fp32"]["infer_samples_per_s"],
        infer_samples_per_s_bf16=ref["bf16"]["infer_samples_per_s"],
        train_gflops=ref["fp32"]["train_gflops"],
        train_gflops_bf16=ref["bf16"]["train_gflops"],
        peak_gflops=peak["fp32"], peak_gflops_bf16=peak["bf16"],
        gemm_gflops={k: dict(median=v[0], min=v[1], max=v[2]) for k, v in gemm.items()},
        gemm_n=n_mm,
        train_peak_ratio=ref["fp32"]["train_gflops"] / peak["fp32"],
        train_peak_ratio_bf16=ref["bf16"]["train_gflops"] / peak["bf16"],
        data_overhead=ref["fp32"]["data_overhead"], data_overhead_bf16=ref["bf16"]["data_overhead"],
        data_overhead_vs_pure=ref["fp32"]["data_overhead_vs_pure"],
        data_overhead_vs_pure_bf16=ref["bf16"]["data_overhead_vs_pure"],
        flops_forward_per_sample=forward_flops(), flops_train_per_sample=train_flops(),
        flops_layers={k: list(v) for k, v in flops().items()},
        models=models,
    )
    res.update(preprocess_pairs_per_s=pre[1][0] if pre else None,
               preprocess_pairs_per_s_all_cores=pre[max(pre)][0] if pre else None)
    if pre:
        import cv2
        res.update(preprocess_workers=max(pre), preprocess_pairs=pre[1][1], preprocess_seconds=pre[1][2],
                   preprocess_opencv_threads=cv2.getNumThreads(),
                   preprocess_seconds_all_cores=pre[max(pre)][2], preprocess_frame_size=list(a.frame_size))
    res.update(loadavg_end=load_end, others_cpu_share=others, seconds=round(time.perf_counter() - t_start, 1))

    print("large matrix product, GFLOP/s median (min-max): " + ", ".join(
        f"{k.replace('_', ' ')} {v[0]:.0f} ({v[1]:.0f}-{v[2]:.0f})" for k, v in gemm.items())
        + f"; peak fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f}")
    print(f"DSSN mul training step: {train_flops() / 1e9:.3f} GFLOP a sample (forward {forward_flops() / 1e9:.3f}); "
          f"{res['train_gflops']:.0f} GFLOP/s fp32 = {100 * res['train_peak_ratio']:.0f}% of the fp32 peak, "
          f"{res['train_gflops_bf16']:.0f} GFLOP/s bf16 = {100 * res['train_peak_ratio_bf16']:.0f}% of the bf16 peak")
    for prec in ("fp32", "bf16"):
        r = ref[prec]
        print(f"data overhead DSSN mul {prec}: {100 * r['data_overhead']:.1f}% of train_fold's epoch outside "
              f"forward..step; vs pure steps {100 * r['data_overhead_vs_pure']:+.1f}% (epoch "
              f"{statistics.median(r['epoch_seconds']):.3f}s, pure step {statistics.median(r['pure_step_seconds']):.3f}s)")
    if pre:
        print(f"preprocess (build_caches, {pre[1][1]} pairs of {a.frame_size[0]}x{a.frame_size[1]} frames): "
              + ", ".join(f"{w} worker{'s' if w > 1 else ''} {v[0]:.1f} pairs/s" for w, v in sorted(pre.items())))
    busy = "" if others is None else f"; other processes used {100 * others:.0f}% of the CPU time meanwhile"
    print(f"load average {load_start} at start, {load_end} at end{busy}; {res['seconds']}s", flush=True)

    if a.profile != "none":
        args = make_args(*REFERENCE, "bf16" if a.profile == "bf16" else "none", device, B, 1)
        profile_steps(folds[2], args)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
