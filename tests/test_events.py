"""TensorBoard events in every run's folder (runs/events.py): read back, with the keys of metrics.jsonl; without
tensorboard installed a run says so once and trains as before; a resume drops the events past its checkpoint."""
import builtins
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import main
from tests.test_unsup import TINY


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    out = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    out["histograms"] = acc.Tags()["histograms"]
    return out


def test_a_runs_folder_holds_its_curves_as_tensorboard_events(tmp_path, tiny_root):
    args = [*TINY, "--epochs", "2", "--data-root", tiny_root, "--output", tmp_path, "--name", "tb"]
    assert main.main([str(a) for a in args]) == 0
    got = scalars(tmp_path / "tb")
    for tag in ("loss/loss", "loss/nce", "train/lr", "train/skipped_steps", "clusters/num_clusters",
                "clusters/num_outliers", "clusters/largest_cluster_share", "clusters/intra_sim_mean",
                "clusters/labels_changed", "clusters/labels_ari_prev", "eval/mAP", "eval/rank1", "eval/mINP",
                "time/train_s", "time/extract_s", "time/cluster_s", "time/eval_s"):
        assert tag in got, tag
    records = [json.loads(x) for x in (tmp_path / "tb" / "metrics.jsonl").read_text().splitlines()]
    assert [s for s, _ in got["eval/mAP"]] == [0, 1, 2]
    assert [round(v, 5) for _, v in got["eval/mAP"]] == [round(r["mAP"], 5) for r in records]
    assert got["clusters/num_clusters"][-1] == (2, records[-1]["num_clusters"])
    assert "clusters/cluster_size_bins" in got["histograms"]


def test_a_resume_drops_the_events_past_its_checkpoint(tmp_path, tiny_root):
    where = ["--data-root", tiny_root, "--output", tmp_path, "--name", "r"]
    assert main.main([str(a) for a in [*TINY, "--epochs", "2", *where]]) == 0
    last = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[-1])
    assert main.main(["--resume", str(tmp_path / "r"), "--epochs", "3", "--data-root", str(tiny_root)]) == 0
    steps = [s for s, _ in scalars(tmp_path / "r")["loss/loss"]]
    assert steps == [1, 2, 3] and last["epoch"] == 2


def test_without_tensorboard_a_run_says_so_once(tmp_path, tiny_root, monkeypatch):
    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    args = [*TINY, "--epochs", "2", "--data-root", tiny_root, "--output", tmp_path, "--name", "none"]
    assert main.main([str(a) for a in args]) == 0
    log = (tmp_path / "none" / "log.txt").read_text()
    assert log.count("writes no TensorBoard events") == 1
    assert not list((tmp_path / "none").glob("events.out.tfevents*"))


def test_a_resume_from_epoch_0_drops_the_stopped_runs_epoch_1(tmp_path, tiny_root):
    """A run whose epoch 1 was logged but whose epoch 1 checkpoint was not written resumes from epoch 0's: its
    step 1 events go, so step 1 appears once (an earlier version purged nothing on a resume from epoch 0)."""
    import torch
    where = ["--data-root", tiny_root, "--output", tmp_path, "--name", "z"]
    assert main.main([str(a) for a in [*TINY, "--epochs", "1", *where]]) == 0
    ckpt = torch.load(tmp_path / "z" / "last.pt", weights_only=True)
    ckpt["epoch"] = 0                                        # as if epoch 1's save had failed
    torch.save(ckpt, tmp_path / "z" / "last.pt")
    assert main.main(["--resume", str(tmp_path / "z"), "--epochs", "1", "--data-root", str(tiny_root)]) == 0
    got = scalars(tmp_path / "z")
    assert [s for s, _ in got["loss/loss"]] == [1] and [s for s, _ in got["eval/mAP"]] == [0, 1]


def test_a_broken_tensorboard_or_a_full_disk_leaves_the_run_going(tmp_path, tiny_root, monkeypatch):
    """A tensorboard whose import raises TypeError (a protobuf that does not fit it), and an events file whose
    write fails (a full disk): one warning each, no traceback, the run ends as without events."""
    real = builtins.__import__

    def broken(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise TypeError("Descriptors cannot be created directly.")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", broken)
    args = [*TINY, "--epochs", "1", "--data-root", tiny_root, "--output", tmp_path]
    assert main.main([str(a) for a in [*args, "--name", "broken"]]) == 0
    assert "tensorboard cannot be imported (TypeError" in (tmp_path / "broken" / "log.txt").read_text()
    monkeypatch.setattr(builtins, "__import__", real)
    import errno

    from torch.utils.tensorboard import SummaryWriter

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(SummaryWriter, "add_scalar", full)
    assert main.main([str(a) for a in [*args, "--epochs", "2", "--name", "full"]]) == 0
    log = (tmp_path / "full" / "log.txt").read_text()
    assert log.count("can no longer be written") == 1 and "No space left" in log
    assert len((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()) == 3
