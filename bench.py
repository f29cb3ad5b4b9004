"""
Speed of DSSN training, inference and preprocessing on this machine, each FLOP rate with its ratio
to the same machine's measured peak.

    python bench.py --json out.json      # under a minute on an idle 2-core CPU, ~4 on a busy one
    python bench.py --quick              # seconds (tests/test_bench.py)
    python bench.py --device cuda        # auto (default) picks cuda when there is one
    python bench.py --device cuda --tf32 # fp32 work in TF32 (compute capability 8.0+)

train   train.py's own loop, train.train_fold unchanged, on a synthetic fold of the real shapes
        held in memory as train.py holds it (uint8 NHWC tensors on the device); an epoch is timed
        between optimizer steps read by torch's global step hook, so train.py is not patched.
infer   the trained model evaluated as train_fold evaluates it (no_grad, autocast, softmax).
peak    the best repeat of a large matrix product, as torch.mm (MKL / cuBLAS) and as the same
        GEMM run as a 1x1 convolution (oneDNN / cuDNN, the libraries of the model's convolutions).
        On a GPU the fp32 peak is plain fp32, TF32 off, as train.py trains (--tf32: a TF32 peak).
prep    caches.build_caches (2 JPEGs, dlib alignment, TV-L1, features, .npz) on a tiny
        make_demo dataset, 1 worker process and one per core. Not FLOP-bound GEMM work: no ratio.
FLOPs are counted by torch's FlopCounterMode (`flops`; a multiply-add is 2), for any network. bf16 rows run
only where train.native_bf16 finds native bf16; elsewhere they are skipped and the reason is printed and
stored.
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
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils import flop_counter

import caches
import dataloader as dl
import flags
import network
import preprocess as pp
import train
import utils


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                        output_padding, groups, output_mask, out_shape, **kwargs):
    """torch's formula for a convolution's backward (flop_counter.conv_backward_flop: the input
    gradient as a transposed convolution, the weight gradient as a convolution of the input with
    the output gradient), except that a grouped convolution's weight gradient is divided by its
    groups: torch 2.14's counts it `groups` times (0.896 GFLOP a DSSN sample too many, from conv2's
    2 groups; fixed upstream in pytorch/pytorch#183405)."""
    t = lambda shape: [shape[1], shape[0]] + list(shape[2:])
    count = 0
    if output_mask[0]:
        count += flop_counter.conv_flop_count(grad_out_shape, w_shape, flop_counter.get_shape(out_shape[0]),
                                              not transposed)
    if output_mask[1]:
        grad_w = t(flop_counter.get_shape(out_shape[1]))
        operands = (t(grad_out_shape), t(x_shape)) if transposed else (t(x_shape), t(grad_out_shape))
        count += flop_counter.conv_flop_count(*operands, grad_w, transposed=False) // groups
    return count


def flops(name="DSSN", fusion=None, num_classes=5):
    """(forward FLOPs, training FLOPs) of one sample of the network declared as `name`, counted by
    torch's own FlopCounterMode (convolutions and matrix products; a multiply-add is 2) on a batch
    of one: a training step is the forward and the backward that autograd runs (no input gradient
    of conv1, whose input is data; no weight gradient of the LRN's constant band). DSSN mul:
    1.389 GFLOP forward, 3.675 GFLOP a training sample."""
    net = network.MODELS[name]
    model = network.build_model(name, num_classes, fusion)
    x = [torch.randint(0, 256, (1, 3, net.size, net.size)).float() for _ in net.modes]
    count = lambda: flop_counter.FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})
    with count() as forward, torch.no_grad():
        model.eval()(*x)
    with count() as step:
        F.cross_entropy(model.train()(*x), torch.zeros(1, dtype=torch.long)).backward()
    return forward.get_total_flops(), step.get_total_flops()


def model_names():
    """bench.py's --models: each declared network, one entry per fusion (DSSN-mul)."""
    return [n for d in network.MODELS.values() for n in ([f"{d.name}-{f}" for f in d.fusions] or [d.name])]


def timed(fn, reps, sync):
    """Seconds of each of `reps` calls of fn, after one untimed call."""
    fn()
    out = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def peak_gflops(device, dtype, n, reps, sync):
    """Best GFLOP/s of an n x n x n matrix product, as torch.mm and as a 1x1 convolution."""
    like = dict(device=device, dtype=dtype)
    a, b = torch.randn(n, n, **like), torch.randn(n, n, **like)
    x = torch.randn(8, n // 4, n // 64, n // 64, **like).contiguous(memory_format=torch.channels_last)
    w = torch.randn(n // 4, n // 4, 1, 1, **like).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        mm = 2 * n ** 3 / min(timed(lambda: torch.mm(a, b), reps, sync)) / 1e9
        conv = 2 * 8 * (n // 64) ** 2 * (n // 4) ** 2 / min(timed(lambda: F.conv2d(x, w), reps, sync)) / 1e9
    return dict(mm=mm, conv1x1=conv, peak=max(mm, conv))


def bench_model(name, amp, device, batch, n_train, epochs, sync, seed=0):
    """train_fold of a network of model_names() (DSSN-mul) for `epochs` epochs, the first one untimed;
    then inference. Returns samples/s of each timed epoch and of each inference batch."""
    model, _, fusion = name.partition("-")
    net = network.MODELS[model]
    argv = ["--model", model, "--image_mode", *net.modes, "--amp", amp, "--device", device,
            "--batch_size", str(batch), "--epochs", str(epochs), "--num_classes", "5"] \
        + (["--combination_mode", fusion] if fusion else [])
    args = train.parser().parse_args(argv)
    args.learning_rate = train.PAPER["learning_rate"]
    args.recipe = net.recipe   # as train.py trains this network
    rng = np.random.default_rng(seed)
    streams = [torch.from_numpy(rng.integers(0, 256, (n_train + batch, net.size, net.size, 3),
                                             dtype=np.uint8))
               .to(device) for _ in net.modes]
    y = torch.from_numpy(rng.integers(0, 5, n_train + batch)).to(device)
    steps = []   # time after each optimizer step; an epoch is n_train / batch steps
    hook = register_optimizer_step_post_hook(
        lambda *_: (sync() if len(steps) % (n_train // batch) == n_train // batch - 1 else None,
                    steps.append(time.perf_counter())))
    try:   # no test samples: any per-epoch evaluation stays out of the epoch time
        _, _, net = train.train_fold(streams, y, np.arange(n_train), np.arange(0), args, seed)
    finally:
        hook.remove()
    ends = steps[n_train // batch - 1::n_train // batch]   # the last step of each epoch
    train_rate = [n_train / (b - a) for a, b in zip(ends, ends[1:])]
    idx = torch.arange(n_train, n_train + batch, device=device)
    with torch.no_grad(), train.autocast(device, amp):   # train_fold's evaluation, gather included
        infer = timed(lambda: net(*[s[idx].permute(0, 3, 1, 2) for s in streams]).float().softmax(1),
                      max(3, epochs), sync)
    return train_rate, [batch / s for s in infer]


def bench_preprocess(pairs_per_subject, subjects, workers, frames=6):
    """{workers: pairs/s} of caches.build_caches over a tiny make_demo dataset."""
    import make_demo
    out = {}
    with tempfile.TemporaryDirectory(prefix="dssn-bench-") as tmp:
        root = os.path.join(tmp, "demo")
        sheet = make_demo.build_demo(root, subjects=subjects, clips_per_class=pairs_per_subject // 5,
                                     frames=frames)
        samples = dl.read_samples(sheet, root, "CASME")
        if workers > 1:   # the workers' forkserver starts once per process (utils.pool): not timed
            with utils.pool(2, caches.PRELOAD) as p:
                list(p.imap_unordered(abs, [0]))
        for w in sorted({1, workers}):
            for flow in pp.FLOW_METHODS:   # the IPOL port (the default) beside OpenCV's DualTVL1
                t = time.perf_counter()
                failures = caches.build_caches(samples, os.path.join(tmp, f"cache_{flow}_{w}"),
                                               "fixed", "dlib", w, quiet=True, flow=flow)
                if failures:
                    raise RuntimeError(f"preprocessing failed: {failures[:3]}")
                out.setdefault(flow, {})[w] = len(samples.table) / (time.perf_counter() - t)
    return out


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="FILE", help="also write the figures to this JSON file")
    flags.device(p, amp=False)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs, figures are rough")
    p.add_argument("--models", nargs="+", default=["DSSN-mul"], choices=model_names(),
                   help="networks of network.py, each with its default --image_mode")
    p.add_argument("--batch", type=utils.positive_int, help="batch size (default the authors' 60; --quick 8)")
    p.add_argument("--epochs", type=utils.int_range(2),
                   help="epochs of train_fold, the first untimed (default 3)")
    return p


def main(argv=None):
    a = parser().parse_args(argv)
    return utils.cli(lambda: run(a))


def run(a):
    device = flags.resolve_device(a.device, a.tf32, a.deterministic)
    cuda = device.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    train.setup_device(device, a.tf32, a.deterministic)   # as train.py runs
    batch = a.batch or (8 if a.quick else 60)
    epochs = a.epochs or (2 if a.quick else 3)
    n_train = batch * (2 if a.quick else 4)   # 240 at batch 60, about a CASME II fold (237)
    gemm_n = 512 if a.quick else 8192 if cuda else 2048
    t0 = time.perf_counter()
    bf16_ok, bf16_why = train.native_bf16(device)
    res = dict(device=torch.cuda.get_device_name(device) if cuda else "cpu", cpu=cpu_name(),
               torch=torch.__version__, threads=torch.get_num_threads(), cpu_count=utils.cpus(),
               batch=batch, train_samples=n_train, quick=a.quick, loadavg_start=os.getloadavg()[0],
               bf16=bf16_ok, bf16_skipped=None if bf16_ok else bf16_why, models={}, peak={},
               tf32=a.tf32, deterministic=a.deterministic)
    print(f"bench: {res['device']} ({res['cpu']}), torch {res['torch']}, {res['threads']} threads, "
          f"batch {batch}, load average {res['loadavg_start']:.2f}", flush=True)
    counted = {}   # model name -> flops()
    precs = {"fp32": (torch.float32, "none")} | ({"bf16": (torch.bfloat16, "bf16")} if bf16_ok else {})
    if not bf16_ok:
        print(f"bf16 skipped: {bf16_why}", flush=True)
    for prec, (dtype, amp) in precs.items():
        res["peak"][prec] = pk = peak_gflops(device, dtype, gemm_n, 3 if a.quick else 5, sync)
        # on a GPU the "fp32" figures say whether TF32 ran them (it is off unless --tf32)
        tf32 = " (TF32 on: --tf32)" if a.tf32 else " (TF32 off)" if cuda and prec == "fp32" else ""
        print(f"peak {prec}{tf32}: {pk['peak']:.0f} GFLOP/s (matmul {pk['mm']:.0f}, "
              f"as 1x1 conv {pk['conv1x1']:.0f})",
              flush=True)
        for name in a.models:
            forward, train_step = counted.setdefault(name, flops(*name.partition("-")[::2]))
            tr, inf = bench_model(name, amp, device, batch, n_train, epochs, sync)
            r = dict(train_samples_per_s=statistics.median(tr), infer_samples_per_s=statistics.median(inf),
                     train_epochs=tr, infer_batches=inf)
            r["train_gflops"] = r["train_samples_per_s"] * train_step / 1e9
            r["infer_gflops"] = r["infer_samples_per_s"] * forward / 1e9
            r["train_peak_ratio"] = r["train_gflops"] / pk["peak"]
            r["infer_peak_ratio"] = r["infer_gflops"] / pk["peak"]
            res["models"].setdefault(name, {})[prec] = r
            print(f"{name} {prec}: train {r['train_samples_per_s']:.1f} samples/s "
                  f"= {r['train_gflops']:.0f} GFLOP/s = {100 * r['train_peak_ratio']:.0f}% of peak; "
                  f"inference {r['infer_samples_per_s']:.1f} samples/s = {r['infer_gflops']:.0f} GFLOP/s "
                  f"= {100 * r['infer_peak_ratio']:.0f}% of peak", flush=True)
    pre = bench_preprocess(5, 1 if a.quick else 2, 1 if a.quick else utils.cpus(), 3 if a.quick else 6)
    res["preprocess_pairs_per_s"] = pre
    for flow, by_workers in pre.items():
        print(f"preprocess ({flow} TV-L1, 320x240 frames): " + ", ".join(
            f"{w} worker{'s' * (w > 1)} {v:.1f} pairs/s" for w, v in by_workers.items()), flush=True)
    res.update(loadavg_end=os.getloadavg()[0], seconds=round(time.perf_counter() - t0, 1))
    print(f"load average {res['loadavg_end']:.2f} at the end (other work on the machine slows every figure); "
          f"{res['seconds']}s", flush=True)
    if a.json:
        utils.atomic_write(a.json, lambda f: f.write(json.dumps(res, indent=2).encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
