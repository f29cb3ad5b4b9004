"""
Dataset utilities, one argparse subcommand each.

    python utils.py samm_rename --root data/SAMM            # dry run: list what would change
    python utils.py samm_rename --root data/SAMM --apply    # rename
    python utils.py samm_rename --root data/SAMM/006/006_1_2 --apply --width 5

samm_rename zero-pads SAMM frame numbers: SAMM/006/006_1_2/006_5562.jpg -> 006_05562.jpg.
The coding sheet stores frame numbers unpadded, but the loader builds file names with
five-digit frames, and some copies of the data ship unpadded names. It works on a whole
SAMM root or a single clip folder, keeps the extension (.jpg/.jpeg/.png/.bmp), is
idempotent and never overwrites a file: when the padded name already exists the file is
left alone and reported as a conflict. Exit status: 0 fine, 1 conflicts (after all safe
renames), 2 bad arguments.

    import utils
    renames, already, skipped = utils.samm_rename_plan("data/SAMM")
    conflicts = utils.apply_renames(renames)
"""
import argparse
import collections
import os
import re
import sys

import dataloader as dl

# {prefix}_{digits}.{ext}; the prefix is greedy so only the last "_" splits off the frame.
FRAME_RE = re.compile(r"^(?P<prefix>.+)_(?P<digits>[0-9]+)\.(?P<ext>[A-Za-z0-9]+)$")
IMAGE_EXTS = {"jpg", "jpeg", "png", "bmp"}
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
        print(f"skip {rel(path)} ({reason})", file=sys.stderr if reason.startswith("conflict") else sys.stdout)
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
    p.add_argument("--width", type=dl.positive_int, default=5, help="digits of the padded frame number")
    p.set_defaults(func=cmd_samm_rename)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
