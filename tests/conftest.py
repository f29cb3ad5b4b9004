# Put the repo root (parent of tests/) on sys.path so tests can `import utils`, `import network`, ...
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402

DEMO_SUBJECTS, DEMO_FRAMES = 4, 12   # 12 frames: test_predict searches the apex of a clip as a video


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The synthetic CASME II demo (4 subjects, one clip of each class, 12 frames) and its caches,
    built and preprocessed once for every test module (dlib + TV-L1 cost ~0.4 s a pair). Shared:
    a test that edits frames or caches copies what it edits (shutil.copytree) and runs write
    into their own tmp_path. make_demo draws each subject from its own generator, so a subset
    of subjects (builders.subset_sheet) is the demo those subjects alone would have been, and
    its caches are these."""
    import make_demo
    import save_preprocess_weight
    d = tmp_path_factory.mktemp("demo")
    root, cache = str(d / "frames"), str(d / "cache")
    sheet = make_demo.build_demo(root, subjects=DEMO_SUBJECTS, clips_per_class=1, frames=DEMO_FRAMES)
    assert save_preprocess_weight.main(["--csv_path", sheet, "--root", root, "--catego", "CASME",
                                        "--cache_dir", cache, "--workers", "2"]) == 0
    return dict(sheet=sheet, root=root, cache=cache, frames=DEMO_FRAMES)



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
