"""benchmarks/gpu_check.py at --tiny sizes on the CPU, so that the one command prepared for a GPU cannot rot:
every part runs in its own process and gives its rows, and a part past its time limit (here faiss, given
half a second) is stopped while the others still run."""
import json

from benchmarks import gpu_check
from reidlab.models import MODELS


def test_every_part_gives_its_rows_and_a_slow_one_is_stopped(tmp_path, tiny_root, capsys):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--data-root", str(tiny_root), "--out", str(out),
                           "--budget", "faiss=0.5"]) == 1
    got = json.loads(out.read_text())
    assert [s["part"] for s in got["parts"]] == list(gpu_check.PARTS)
    status = {s["part"]: s for s in got["parts"]}
    assert status.pop("faiss")["timed_out"] and "timed out" in capsys.readouterr().out
    assert all(s["exit"] == 0 and not s["timed_out"] for s in status.values())
    rows = got["rows"]
    measured = {r["model"] for r in rows if r["part"] == "throughput" and "train_images_per_s" in r}
    assert measured == set(MODELS.names())
    assert all(r["precision"] == "torch.bfloat16" for r in rows if "precision" in r)
    assert next(r for r in rows if r.get("model") == "resnet50" and r.get("channels_last") is not None)["channels_last"]
    assert [r["N"] for r in rows if r["part"] == "pseudo_labels"] == [300, 1000]
    assert [r["N"] for r in rows if r["part"] == "ca_jaccard"] == [300, 1000]
    assert all(r["num_clusters"] > 0 and "camera_gap" in r for r in rows if r["part"] == "ca_jaccard")
    assert all(r["num_clusters"] > 0 for r in rows if r["part"] == "pseudo_labels")
    assert [(r["N"], r["clusters"]) for r in rows if r["part"] == "hdc"] == [(300, 16), (1000, 40)]
    assert all(r["iterations"] >= 1 for r in rows if r["part"] == "hdc")
    assert len([r for r in rows if r["part"] == "evaluation"]) == 2
    epochs = [r for r in rows if r["part"] == "unsup_epochs" and "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3] and all(r["train_s"] > 0 for r in epochs)
    summary = next(r for r in rows if r["part"] == "unsup_epochs" and r.get("summary"))
    assert summary["extrapolated_50_epochs_min"] > 0
    assert not [r for r in rows if r["part"] == "faiss"]
    assert [t["target"] for t in got["targets"]] == list(gpu_check.TARGETS)
    assert all(t["met"] is None for t in got["targets"])              # --tiny judges nothing


def test_the_faiss_part_alone(tmp_path):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--parts", "faiss", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["part"] == "faiss" and row["knn_torch_s"] >= 0 and row["path"]
