# Put the repo root (parent of tests/) on sys.path so tests can `import utils`, `import network`, ...
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402

import utils  # noqa: E402

DEMO_SUBJECTS, DEMO_FRAMES = 4, 12   # 12 frames: test_predict searches the apex of a clip as a video


# The suite runs in pytest-xdist workers (pytest.ini: -n auto). Each worker gets an equal share of
# the CPUs as its torch threads, and so do the train.py processes a test starts: CPU results are
# bit-identical only for the same thread count, and the tests compare runs across processes.
def pytest_xdist_auto_num_workers(config):
    return min(utils.cpus(), 8)   # beyond 8 the longest test, not the worker count, sets the time


def pytest_configure(config):
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = str(max(1, utils.cpus() // int(workers)))
        os.environ["OMP_NUM_THREADS"] = threads   # before torch is imported here or in a child
        import torch
        torch.set_num_threads(int(threads))


def built_once(tmp_path_factory, name, build):
    """The folder that build(path) fills once per test session: under xdist, once for all workers
    (the first to take the lock builds it, the others wait for it), so no worker or module
    preprocesses or trains the same thing again. Read it, never write into it."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        path = tmp_path_factory.mktemp(name)
        build(path)
        return path
    base = tmp_path_factory.getbasetemp().parent   # this session's, shared by its workers
    path, done = base / name, base / f"{name}.done"
    with FileLock(str(base / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)   # what a worker that crashed left
            path.mkdir()
            build(path)
            done.touch()
    return path


@pytest.fixture(autouse=True)
def cpu_only(request, monkeypatch):
    """Every test but those marked cuda (tests/test_cuda.py) sees no GPU in this process, so that
    on a GPU machine the CPU suite still runs on the CPU, where runs repeat bit for bit (its
    scripts are also given --device cpu: the shared builds below are made before this applies).
    The environment is left alone: CUDA_VISIBLE_DEVICES would hide the GPU from the cuda tests of
    this worker too, once CUDA initialised under it."""
    if request.node.get_closest_marker("cuda") is None:
        import torch
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The synthetic CASME II demo (4 subjects, one clip of each class, 12 frames) and its caches,
    built and preprocessed once for every test module and worker. Shared: a test that edits
    frames or caches copies what it edits (shutil.copytree) and runs write into their own
    tmp_path. make_demo draws each subject from its own generator, so a subset of subjects
    (builders.subset_sheet) is the demo those subjects alone would have been, and its caches
    are these."""
    import make_demo
    import save_preprocess_weight

    def build(d):
        sheet = make_demo.build_demo(str(d / "frames"), subjects=DEMO_SUBJECTS, clips_per_class=1,
                                     frames=DEMO_FRAMES)
        assert save_preprocess_weight.main(["--csv_path", sheet, "--root", str(d / "frames"),
                                            "--catego", "CASME", "--cache_dir", str(d / "cache"),
                                            "--workers", str(utils.cpus())]) == 0
    d = built_once(tmp_path_factory, "demo", build)
    return dict(sheet=str(d / "frames" / make_demo.SHEET), root=str(d / "frames"), cache=str(d / "cache"),
                frames=DEMO_FRAMES)


@pytest.fixture(scope="session")
def cpu_native_bf16():
    """Whether this CPU has native bf16 in oneDNN, read from /proc/cpuinfo, not from torch: the
    answer train.native_bf16 must give. torch's gate (mkldnn_bf16_device_check in
    aten/src/ATen/native/mkldnn/Utils.h) wants AVX-512 BW, VL and DQ on x86, or Arm's bf16."""
    import torch
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        pytest.skip("no /proc/cpuinfo to read the CPU's features from")
    flags = {w for line in lines if line.startswith(("flags", "Features"))
             for w in line.split(":", 1)[1].split()}
    x86 = {"avx512bw", "avx512vl", "avx512dq"} <= flags
    return torch.backends.mkldnn.is_available() and (x86 or "bf16" in flags)


@pytest.fixture(scope="session")
def once(tmp_path_factory):
    """once(name, build) -> built_once's folder, for a module's fixture that trains or preprocesses
    what several workers' tests read."""
    return lambda name, build: built_once(tmp_path_factory, name, build)


@pytest.fixture(scope="session")
def demo_export(demo, tmp_path_factory):
    """The shared demo's flow exported once (flowfiles.export, per-fold layout asked for): .flo
    files with apex frames and flows.csv; its 5 classes do not map onto MEGC's codes, so no
    composite images (demo_export3 has them)."""
    import dataloader as dl
    import flowfiles

    def build(d):
        samples = dl.read_samples(demo["sheet"], demo["root"], "CASME")
        assert flowfiles.export(samples, demo["cache"], str(d), folds=True) == len(samples.table)
    return str(built_once(tmp_path_factory, "demo_export", build))


@pytest.fixture(scope="session")
def demo_export3(demo, tmp_path_factory):
    """The shared demo exported once through save_preprocess_weight.py's command line with
    --num_classes 3 (MEGC's classes, from the same caches): flows.csv and .flo files, the
    composite's STSTNet-style images, apex faces and label CSV, and its per-fold layout."""
    import save_preprocess_weight

    def build(d):
        assert save_preprocess_weight.main(["--csv_path", demo["sheet"], "--root", demo["root"],
                                            "--catego", "CASME", "--num_classes", "3",
                                            "--cache_dir", demo["cache"], "--workers", "1",
                                            "--export", str(d / "out"), "--export_folds"]) == 0
    return str(built_once(tmp_path_factory, "demo_export3", build) / "out")
