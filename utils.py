"""
Helpers every script may use, and the dataset utilities' command line.

    python utils.py samm_rename --root data/SAMM            # dry run: list what would change
    python utils.py samm_rename --root data/SAMM --apply    # rename
    python utils.py samm_rename --root data/SAMM/006/006_1_2 --apply --width 5

samm_rename zero-pads SAMM frame numbers: SAMM/006/006_1_2/006_5562.jpg -> 006_05562.jpg.
The coding sheet stores frame numbers unpadded, and some copies of the data ship unpadded
names; the loader matches frames by number either way, but other tools expect the padding.
It works on a whole SAMM root or a single clip folder, keeps the extension, is idempotent and
never overwrites a file: when the padded name already exists the file is left alone and
reported as a conflict. Exit status: 0 fine, 1 conflicts (after all safe renames), 2 bad arguments.

    import utils
    utils.atomic_write("out/summary.json", lambda f: f.write(b"{}"))   # never half-written
    p.add_argument("--epochs", type=utils.positive_int)                # checked at parse time
    for epoch in utils.progress(range(100), "train", unit="epoch"): ...
    return utils.cli(lambda: run(args), "interrupted: rerun to resume")   # one-line errors, exit 2
"""
import argparse
import collections
import hashlib
import math
import os
import re
import sys
import tempfile
import time
from multiprocessing import get_context

from tqdm import tqdm


class UserError(Exception):
    """Bad input (a file, a sheet row, a flag): the message is one line that names it. The
    project's own error classes derive from it; utils.cli prints them without a traceback."""


# Frame files are images with one of these extensions (SMIC NIR/VIS copies are .bmp or .jpg).
IMAGE_EXTS = ("jpg", "jpeg", "png", "bmp", "tif", "tiff")


# ---------------------------------------------------------------------------------------------
# files: written atomically and durably

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path, write):
    """Call write(fileobj) on a temp file beside `path`, fsync it, rename it into place and fsync
    the folder: a crash, Ctrl-C or power cut leaves the old file or the new one, never a
    half-written or empty `path` that would later count as finished."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY)   # the rename itself is durable only once the folder is
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def sha256(path):
    """Hex sha256 of a file's content, or None if it cannot be read (a missing frame)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def pyplot():
    """matplotlib.pyplot drawing into files only (the Agg backend: no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, path, dpi=100):
    """Save a matplotlib figure atomically as PNG and close it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    pyplot().close(fig)


# ---------------------------------------------------------------------------------------------
# command line: flag ranges checked at parse time, CPUs, one-line errors

def int_range(lo, hi=None):
    """An argparse type: an integer in lo..hi, else argparse's one-line error naming the flag
    (`train.py: error: argument --epochs: must be 1 or more, got 0`), before any work starts."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            want = f"{lo} or more" if hi is None else f"{lo}..{hi}"
            raise argparse.ArgumentTypeError(f"must be {want}, got {v}")
        return v
    parse.__name__ = f"int {lo}.." + ("" if hi is None else str(hi))
    return parse


positive_int = int_range(1)
nonneg_int = int_range(0)


def positive_float(text):
    """An argparse type: a finite number above 0 (e.g. a learning rate)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return v


def shard(text):
    """An argparse type for --shard I/N: (I, N) with 1 <= I <= N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N (e.g. 2/4), got {text!r}")
    return i, n


def as_list(x):
    """A path argument as a list of str: None -> [], "a" -> ["a"], ["a", "b"] as is."""
    if x is None:
        return []
    return [os.fspath(x)] if isinstance(x, (str, os.PathLike)) else list(map(os.fspath, x))


def cpus():
    """The CPUs this process may run on (a SLURM --cpus-per-task, taskset), not the node's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # no affinity call on this OS
        return os.cpu_count() or 1


def cli(job, interrupted="interrupted"):
    """Run job() and return its exit status: what every script's main(argv) returns. The
    project's own errors (bad data, sheet, flag; a file that cannot be read or written) become
    one line and exit 2; Ctrl-C prints `interrupted` and exits 130. Anything else is a bug
    (perhaps in edited code) and keeps its traceback."""
    try:
        return job()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
    except OSError as e:
        if e.filename is None:
            raise
        print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return 130
    return 2


# ---------------------------------------------------------------------------------------------
# progress and worker pools

class progress:
    """Progress of a loop: a tqdm bar on a terminal; elsewhere (a SLURM log, a pipe) a plain line
    at most every `every` seconds instead of carriage-return updates, so log files stay readable.
    `set_postfix(loss="0.123")` shows figures with it (call it once per item at most, e.g. per
    epoch: the value is formatted by the caller, so a CUDA loop syncs only when it asks to).

        bar = utils.progress(range(100), "train", unit="epoch")
        for epoch in bar:
            ...
            bar.set_postfix(loss=f"{loss:.3f}")
    """

    def __init__(self, iterable, desc, total=None, unit="it", every=30.0, disable=False, file=None):
        self.file = file or sys.stderr
        self.iterable, self.desc, self.unit, self.every = iterable, desc, unit, every
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.postfix, self.disable = {}, disable
        self.bar = None
        if not disable and self.file.isatty():
            self.bar = tqdm(iterable, desc=desc, total=self.total, unit=unit, leave=False,
                            dynamic_ncols=True, file=self.file)

    def set_postfix(self, **kw):
        self.postfix = kw
        if self.bar is not None:
            self.bar.set_postfix(kw, refresh=False)

    def __iter__(self):
        if self.bar is not None:
            yield from self.bar
            return
        t0 = last = time.perf_counter()
        for n, item in enumerate(self.iterable, 1):
            yield item
            now = time.perf_counter()
            if not self.disable and now - last >= self.every and n != self.total:
                last = now
                of = f"/{self.total}" if self.total else ""
                left = f", about {(self.total - n) * (now - t0) / n:.0f}s left" if self.total else ""
                extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
                print(f"{self.desc}: {n}{of} {self.unit}s, {now - t0:.0f}s{left}{extra}",
                      file=self.file, flush=True)


class _Serial:
    """Pool stand-in for one worker: no fork, easier to debug."""
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap_unordered(self, fn, jobs):
        return map(fn, jobs)


def pool(workers, preload=()):
    """A process pool with imap_unordered, or the same in this process for one worker. The workers
    are forked from a forkserver, a process that has imported the modules `preload` names and run
    nothing else: forking this process could copy a lock held by one of torch's or OpenMP's
    threads (bench.py trains before it preprocesses) and hang the worker. The server starts once
    per process and finds `preload` on its own path (the current folder, PYTHONPATH); what it
    cannot find, each worker of each pool imports itself. Each worker loads what it needs (dlib's
    landmark model) once. Costs: docs/performance.md."""
    if workers <= 1:
        return _Serial()
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ctx.Pool(workers)


# ---------------------------------------------------------------------------------------------
# SAMM frame renaming

# {prefix}_{digits}.{ext}; the prefix is greedy so only the last "_" splits off the frame.
FRAME_RE = re.compile(r"^(?P<prefix>.+)_(?P<digits>[0-9]+)\.(?P<ext>[A-Za-z0-9]+)$")
NOT_FRAME = "not {prefix}_{digits}.{ext}"
NOT_IMAGE = "not an image"


def samm_rename_plan(root, width=5):
    """Plan the renames under root without touching the disk.

    Returns (renames, already, skipped): renames is a list of (old_path, new_path),
    already the number of frames whose number has >= width digits, skipped a list of
    (path, reason). Reasons starting with "conflict" mean the padded name is taken,
    on disk or by another file of the plan (006_1.jpg and 006_01.jpg both want
    006_00001.jpg: neither is renamed, since we cannot tell which one is right).
    """
    candidates, already, skipped = [], 0, []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()  # deterministic walk order, so listings are stable
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            m = FRAME_RE.match(name)
            if m is None:
                skipped.append((path, NOT_FRAME))
            elif m["ext"].lower() not in IMAGE_EXTS:
                skipped.append((path, NOT_IMAGE))
            elif len(m["digits"]) >= width:
                already += 1
            else:
                new = f"{m['prefix']}_{m['digits'].zfill(width)}.{m['ext']}"
                candidates.append((path, os.path.join(dirpath, new)))
    claims = collections.Counter(new for _, new in candidates)
    renames = []
    for old, new in candidates:
        if os.path.lexists(new):
            skipped.append((old, f"conflict: {os.path.basename(new)} exists"))
        elif claims[new] > 1:
            skipped.append((old, f"conflict: {os.path.basename(new)} wanted by {claims[new]} files"))
        else:
            renames.append((old, new))
    return renames, already, skipped


def apply_renames(plan):
    """Rename each (old, new) of plan unless new exists; return the skipped pairs.

    The existence check is repeated here (the plan may be stale) so nothing is overwritten:
    os.rename would silently replace an existing target on POSIX.
    """
    conflicts = []
    for old, new in plan:
        if os.path.lexists(new):
            conflicts.append((old, new))
        else:
            os.rename(old, new)
    return conflicts


def error(command, msg):
    """One line, no traceback, exit status 2 like argparse's own errors."""
    print(f"utils.py {command}: error: {msg}", file=sys.stderr)
    return 2


def cmd_samm_rename(args):
    if not os.path.exists(args.root):
        return error(args.command, f"--root {args.root} does not exist")
    if not os.path.isdir(args.root):
        return error(args.command, f"--root {args.root} is not a directory")
    renames, already, skipped = samm_rename_plan(args.root, args.width)
    rel = lambda p: os.path.relpath(p, args.root)
    for old, new in renames:
        print(f"{rel(old)} -> {rel(new)}")
    late = apply_renames(renames) if args.apply else []
    for old, new in late:
        skipped.append((old, f"conflict: {os.path.basename(new)} appeared before the rename"))
    for path, reason in skipped:
        print(f"skip {rel(path)} ({reason})",
              file=sys.stderr if reason.startswith("conflict") else sys.stdout)
    kinds = collections.Counter(reason.split(":")[0] for _, reason in skipped)
    why = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    verb = "renamed" if args.apply else "would be renamed"
    print(f"{len(renames) - len(late)} files {verb}, {already} already padded, "
          f"{len(skipped)} skipped" + (f" ({why})" if why else ""))
    if kinds["conflict"]:
        print(f"{kinds['conflict']} conflicts: those files were left as they are", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description="DSSN dataset utilities.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("samm_rename", help="zero-pad SAMM frame numbers in file names")
    p.add_argument("--root", required=True, help="SAMM root (subject/clip folders) or one clip folder")
    p.add_argument("--apply", action="store_true", help="rename; without it only list (dry run)")
    p.add_argument("--width", type=positive_int, default=5, help="digits of the padded frame number")
    p.set_defaults(func=cmd_samm_rename)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
