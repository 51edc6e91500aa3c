"""The unsupervised loop end to end on the tiny synthetic benchmark, and resume."""
import json

import pytest
import torch

import main
from reidlab.runs.checkpoint import load_checkpoint

TINY = ["--config", "demo", "--set", "data.synthetic_size=tiny", "--set", "data.height=32", "--set", "data.width=16",
        "--set", "train.iters=3", "--set", "train.num_ids=4", "--set", "train.num_instances=4",
        "--set", "test.eval_every=1", "--set", "cluster.k1=10", "--set", "cluster.eps=0.6",
        "--set", "test.batch_size=64", "--set", "test.pool_ranklists=0", "--device", "cpu"]


def run(tmp_path, root, name, *extra):
    assert main.main([*TINY, "--data-root", str(root), "--output", str(tmp_path), "--name", name, *extra]) == 0
    return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


def test_loop_runs_and_writes_its_run_folder(tmp_path, tiny_root):
    records = run(tmp_path, tiny_root, "a", "--epochs", "2")
    assert [r["epoch"] for r in records] == [0, 1, 2]
    for r in records[1:]:
        assert {"num_clusters", "num_outliers", "loss", "mAP", "rank1", "rank5", "rank10", "mINP"} <= set(r)
        assert 0 <= r["mAP"] <= 1
    d = tmp_path / "a"
    assert (d / "config.yaml").is_file() and (d / "log.txt").is_file()
    ckpt = load_checkpoint(d / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["model"]["name"] == "resnet18"
    assert (d / "best.pt").is_file()
    # --mode evaluate recomputes the saved model's metrics
    best = load_checkpoint(d / "best.pt")
    rec = [r for r in records if r["epoch"] == best["epoch"]][0]
    from reidlab.use.evaluate import evaluate_checkpoint
    from reidlab.runs.config import build_config
    r = evaluate_checkpoint(build_config(base=best["config"], overrides=[{"data": {"root": str(tiny_root)}}]), best)
    assert r["mAP"] == pytest.approx(rec["mAP"], abs=1e-5)


def test_resume_gives_the_same_run(tmp_path, tiny_root):
    full = run(tmp_path, tiny_root, "full", "--epochs", "3")
    run(tmp_path, tiny_root, "part", "--epochs", "1")           # as if killed after epoch 1
    assert main.main(["--resume", str(tmp_path / "part"), "--epochs", "3", "--data-root", str(tiny_root)]) == 0
    resumed = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in resumed] == [0, 1, 2, 3]
    for a, b in zip(full, resumed):
        assert a.get("num_clusters") == b.get("num_clusters") and a.get("num_outliers") == b.get("num_outliers")
        if a.get("loss") is not None:
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    assert full[-1]["mAP"] == pytest.approx(resumed[-1]["mAP"], abs=1e-4)


def test_epoch_without_clusters_is_skipped(tmp_path, tiny_root):
    records = run(tmp_path, tiny_root, "none", "--epochs", "1", "--set", "cluster.eps=0.001",
                  "--set", "cluster.min_samples=1000")
    assert records[-1]["num_clusters"] == 0 and records[-1]["loss"] is None


def test_model_output_contract():
    from reidlab.models import build_model
    m = build_model("resnet18", pretrained="none")
    x = torch.randn(4, 3, 32, 16)
    out = m(x)
    assert out.embedding.shape == (4, 512) and out.features.shape == (4, 512) and out.aux_losses == {}
    m.eval()
    f = m(x)
    assert f.shape == (4, 512) and torch.allclose(f.norm(dim=1), torch.ones(4), atol=1e-5)


def test_pretrained_from_a_local_file(tmp_path):
    import torchvision
    from reidlab.models import build_model
    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    m = build_model("resnet18", pretrained=str(tmp_path / "r18.pth"))
    assert torch.equal(m.base[0].weight, tv.conv1.weight)
    assert torch.equal(m.base[7][1].conv2.weight, tv.layer4[1].conv2.weight)
    from reidlab.errors import ReIDError
    with pytest.raises(ReIDError, match="another architecture"):
        build_model("resnet50", pretrained=str(tmp_path / "r18.pth"))


def test_imagenet_weights_unavailable_is_a_clear_error(monkeypatch):
    import urllib.error

    import torchvision

    from reidlab.errors import ReIDError
    from reidlab.models import build_model

    def offline(self, *a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ReIDError, match="model.pretrained=none"):
        build_model("resnet18", pretrained="imagenet")


def test_evaluate_with_rerank(tmp_path, tiny_root):
    records = run(tmp_path, tiny_root, "rr", "--epochs", "1", "--set", "test.rerank=true", "--set", "test.rerank_k1=8")
    assert 0 < records[-1]["mAP"] <= 1
