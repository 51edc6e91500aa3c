"""A user's mistakes, round two: where results go (a folder for a file, a suffix nothing writes, a place
that cannot be written, a full disk, a name too long, a link that leads nowhere), resumes that must
leave a run as it was, and data and checkpoint files that are not what they seem. Each ends in exit 2
with a message that says what to do, and changes no existing run folder."""
import errno
import hashlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import main
from reidlab.data.files import write_atomically
from reidlab.errors import ReIDError
from tests.test_unsup import TINY
from tests.test_use import trained  # noqa: F401  (the module's trained run)

ROOT = Path(__file__).resolve().parents[1]


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (names, sizes and bytes): equal before and after means untouched."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def refused(args, capsys, *words):
    """``main.main(args)`` exits 2 with all of ``words`` in its message (in-process: any other exception
    would fail the test with its traceback)."""
    assert main.main(args) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    return err


def test_use_mode_outputs_are_checked_before_the_work(trained, tiny_root, tmp_path, capsys):  # noqa: F811
    query = str(tiny_root / "synthetic-tiny" / "query")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    extract = ["--mode", "extract", "--checkpoint", str(trained), "--images", query, "--output"]
    refused([*extract, str(tmp_path / "adir")], capsys, "is a folder", "adir/gallery.npz")
    refused([*extract, str(tmp_path / "q.txt")], capsys, ".npz", "q.npz")
    refused([*extract, "/proc/q.npz"], capsys, "nothing can be written in /proc")
    refused([*extract, str(tmp_path / "afile" / "q.npz")], capsys, "is a file, not a folder")
    refused([*extract, str(tmp_path / ("x" * 300 + ".npz"))], capsys, "304 bytes", "shorter")
    refused([*extract, str(tmp_path / "loop" / "q.npz")], capsys, "leads nowhere")
    search = ["--mode", "search", "--checkpoint", str(trained), "--query", query, "--gallery", query, "--output"]
    refused([*search, str(tmp_path / "adir")], capsys, "is a folder", "search.png")
    refused([*search, str(tmp_path / "picture")], capsys, "without a suffix", "picture.png")
    refused([*search, str(tmp_path / "picture.xyz")], capsys, ".png", "not .xyz")
    refused(["--mode", "explain", "--checkpoint", str(trained), "--images", query, "--output",
             str(tmp_path / "afile")], capsys, "is a file", "folder")
    refused(["--mode", "export", "--checkpoint", str(trained), "--output", str(tmp_path / "m.pt")], capsys, ".onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "loop"]     # nothing written
    assert not any((tmp_path / "adir").iterdir())


def test_search_writes_the_picture_it_names(trained, tiny_root, tmp_path):  # noqa: F811
    query = str(tiny_root / "synthetic-tiny" / "query")
    out = tmp_path / "sub" / "ranks.jpg"
    assert main.main(["--mode", "search", "--checkpoint", str(trained), "--query", query, "--gallery", query,
                      "--topk", "2", "--output", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "JPEG"
    assert [p.name for p in out.parent.iterdir()] == ["ranks.jpg"]                   # no temporary file left


def test_a_gallery_of_another_model_is_refused(trained, tiny_root, tmp_path, capsys):  # noqa: F811
    query = str(tiny_root / "synthetic-tiny" / "query")
    gallery = tmp_path / "g.npz"
    assert main.main(["--mode", "extract", "--checkpoint", str(trained), "--images", query,
                      "--output", str(gallery)]) == 0
    other = torch.load(trained / "best.pt", weights_only=True)
    other["model"] = {k: v * 1.01 if v.is_floating_point() else v for k, v in other["model"].items()}
    torch.save(other, tmp_path / "other.pt")
    refused(["--mode", "search", "--checkpoint", str(tmp_path / "other.pt"), "--query", query, "--gallery",
             str(gallery), "--output", str(tmp_path / "s.png")], capsys, "another model", "extract the gallery again")
    (tmp_path / "text.npz").write_text("features,paths\n1,2\n")
    err = refused(["--mode", "search", "--checkpoint", str(trained), "--query", query, "--gallery",
                   str(tmp_path / "text.npz"), "--output", str(tmp_path / "s.png")], capsys, "a text file")
    assert "allow_pickle" not in err


def test_checkpoints_with_the_right_keys_and_wrong_contents(tmp_path, capsys):
    for name, content in (("a", {"model": {}, "config": "x"}), ("b", {"model": {"w": 1}, "config": {}}),
                          ("c", {"model": {"w": torch.zeros(1)}, "config": ["x"]})):
        torch.save(content, tmp_path / f"{name}.pt")
        refused(["--mode", "evaluate", "--checkpoint", str(tmp_path / f"{name}.pt")], capsys, "not their contents")


def test_write_atomically_keeps_the_old_file_when_a_write_fails(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def full(tmp: Path):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(ReIDError, match="disk is full"):
        write_atomically(target, full, "x")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_a_full_disk_in_training_is_a_clear_error(tmp_path, tiny_root):
    """The process's file-size limit (``ulimit -f``) stands in for a full disk: the first checkpoint cannot
    be written. Exit 2 with the project's message, no traceback, no temporary file, no empty FAILED.txt."""
    limit = 256 * 1024                                   # the config and the log fit, a checkpoint does not

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    p = subprocess.run([sys.executable, str(ROOT / "main.py"), *TINY, "--epochs", "1", "--data-root", str(tiny_root),
                        "--output", str(tmp_path), "--name", "full"], cwd=ROOT, capture_output=True, text=True,
                       preexec_fn=small_files, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "could not write the checkpoint last.pt" in p.stderr, p.stderr[-2000:]
    run = tmp_path / "full"
    assert not [f.name for f in run.iterdir() if f.name.startswith(".tmp-")]
    failed = run / "FAILED.txt"
    assert failed.is_file() and failed.stat().st_size > 0 and "could not write" in failed.read_text()


def test_a_resume_that_cannot_go_on_leaves_the_run_as_it_was(tmp_path, tiny_root, capsys):
    args = [*TINY, "--epochs", "1", "--set", "train.iters=1", "--data-root", str(tiny_root), "--output", str(tmp_path)]
    assert main.main([*args, "--name", "a"]) == 0
    assert main.main([*args, "--name", "b", "--seed", "2"]) == 0
    before = tree_digest(tmp_path)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    # a rejected override: the model it builds does not take the checkpoint's weights
    refused(["--resume", str(run_a), "--epochs", "2", "--set", "model.name=resnet50"], capsys, "does not fit")
    # another run's last.pt copied into this run's folder
    (run_a / "last.pt").rename(tmp_path / "a_last.pt")
    (run_a / "last.pt").write_bytes((run_b / "last.pt").read_bytes())
    refused(["--resume", str(run_a), "--epochs", "2"], capsys, "written by another run", "seed 2")
    (run_a / "last.pt").unlink()
    (tmp_path / "a_last.pt").rename(run_a / "last.pt")
    assert tree_digest(tmp_path) == before and not (run_a / "FAILED.txt").exists()
    # a damaged line before the last in metrics.jsonl: said before the folder is opened (no lock, no FAILED.txt)
    metrics = run_b / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    damaged = tree_digest(tmp_path)
    refused(["--resume", str(run_b), "--epochs", "2"], capsys, "line 2", "restore it")
    assert tree_digest(tmp_path) == damaged
    # a ViT size that does not exist: refused before a run folder is made
    refused([*args, "--name", "v", "--set", "model.name=vit", "--set", "model.args.size=huge"], capsys, "huge")
    assert not (tmp_path / "v").exists()


def test_best_pt_weighs_the_model_before_training(tmp_path, tiny_root):
    assert main.main([*TINY, "--epochs", "2", "--set", "train.iters=1", "--data-root", str(tiny_root),
                      "--output", str(tmp_path), "--name", "r"]) == 0
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    best = max((r for r in records if "mAP" in r), key=lambda r: r["mAP"])
    assert torch.load(tmp_path / "r" / "best.pt", weights_only=True)["epoch"] == best["epoch"]
    assert records[0]["epoch"] == 0


def test_market_names_that_half_match_are_skipped(tmp_path, caplog):
    from reidlab.data.datasets import Skipped, parse_market_folder
    folder = tmp_path / "bounding_box_train"
    folder.mkdir()
    for name in ("0002_c1s1_000451_03.jpg", "2020-01-05_c1_cam.jpg", "0003_c0s1_01.jpg", "x0004_c2.jpg",
                 "-1_c1s1_000001_00.jpg", "0005_c12s1_000001_00.jpg"):
        Image.new("RGB", (8, 16)).save(folder / name)
    skipped = Skipped()
    samples = parse_market_folder(folder, skipped)
    assert sorted((Path(s.path).name, s.pid, s.camid) for s in samples) == [
        ("0002_c1s1_000451_03.jpg", 2, 0), ("0005_c12s1_000001_00.jpg", 5, 11)]
    assert sum(n for reason, n in skipped.items() if "parse" in reason) == 3


def test_a_decompression_bomb_is_an_unreadable_image(tmp_path, monkeypatch):
    from reidlab.data.images import decode_image
    from reidlab.errors import DatasetError
    Image.new("RGB", (64, 64)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)     # 4,096 pixels: over twice the limit
    with pytest.raises(DatasetError, match="decompression bomb"):
        decode_image(str(tmp_path / "bomb.png"), 32, 16)


def test_explain_names_two_cameras_same_file_apart(tmp_path):
    from reidlab.use.explain import picture_names
    files = [tmp_path / "cam1" / "0001.jpg", tmp_path / "cam2" / "0001.jpg", tmp_path / ("y" * 300 + ".jpg")]
    names = picture_names(tmp_path, files)
    assert names[:2] == ["cam1__0001_explain.png", "cam2__0001_explain.png"]
    assert len(names[2].encode()) <= 255 and len(set(names)) == 3


def test_training_output_that_is_a_link_loop_or_too_long(tmp_path, tiny_root, capsys):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    base = [*TINY, "--epochs", "1", "--data-root", str(tiny_root)]
    refused([*base, "--output", str(tmp_path / "loop")], capsys, "leads nowhere")
    refused([*base, "--output", str(tmp_path), "--name", "n" * 230], capsys, "230 bytes")
    refused([*base, "--output", str(tmp_path), "--data-root", str(tmp_path / "loop"),
             "--set", "data.synthetic_size=small"], capsys, "leads nowhere")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop"]
    assert not np.any([p.is_dir() for p in tmp_path.iterdir()])
