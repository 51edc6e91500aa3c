"""Using a trained model: extract, search, pictures of a run, explain, ONNX export, and their bad inputs."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import main
from tests.conftest import run_in_process
from tests.test_unsup import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_root):
    """A ResNet-18 trained one epoch on tiny synthetic data, with rank lists of 4 queries."""
    out = tmp_path_factory.mktemp("runs")
    assert main.main([*TINY, "--data-root", str(tiny_root), "--output", str(out), "--name", "r", "--epochs", "1",
                      "--set", "train.iters=2", "--set", "test.visualize=4"]) == 0
    return out / "r"


def table_rows(out: str) -> list[list[str]]:
    """The cells of the rows of the search's printed table (query, rank, distance, gallery file)."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") == 5]
    return [r for r in rows if r[1].isdigit()]


def cli(*args):
    """The command in this process (tests.conftest.run_in_process)."""
    return run_in_process(*args)


def test_run_pictures_exist_and_have_their_size(trained):
    from reidlab.evaluation.visualize import rank_list_size
    from reidlab.runs.curves import CURVES_SIZE
    with Image.open(trained / "curves.png") as im:
        im.load()
        assert im.size == CURVES_SIZE
    with Image.open(trained / "ranklist.png") as im:
        im.load()
        assert im.size == rank_list_size(4, 10)


def test_extract_gives_the_evaluation_features(trained, tiny_root, tmp_path):
    from reidlab.data.images import load_images
    from reidlab.evaluation import extract_features
    from reidlab.use.trained import load_trained
    query = tiny_root / "synthetic-tiny" / "query"
    assert main.main(["--mode", "extract", "--checkpoint", str(trained), "--images", str(query),
                      "--output", str(tmp_path / "q.npz")]) == 0
    z = np.load(tmp_path / "q.npz")
    assert (int(z["height"]), int(z["width"])) == (32, 16) and int(z["dim"]) == z["features"].shape[1] == 512
    model, cfg, _, device = load_trained(str(trained))
    paths = sorted(query.glob("*.jpg"))
    assert list(z["paths"]) == [p.name for p in paths]
    assert cfg.data.resize == "bicubic"                       # the demo recipe's; extract resizes as training did
    ref = extract_features(model, load_images([str(p) for p in paths], 32, 16, resize="bicubic"), device, 64)
    assert torch.allclose(torch.from_numpy(z["features"]), ref, atol=1e-5)
    bilinear = extract_features(model, load_images([str(p) for p in paths], 32, 16), device, 64)
    assert not torch.allclose(torch.from_numpy(z["features"]), bilinear, atol=1e-5)


def test_search_finds_the_query_itself_first(trained, tiny_root, tmp_path):
    from reidlab.evaluation.visualize import rank_list_size
    gallery = tiny_root / "synthetic-tiny" / "bounding_box_test"
    some = sorted(gallery.glob("0*.jpg"))[5]
    png = tmp_path / "search.png"
    code, out, err = cli("--mode", "search", "--checkpoint", str(trained), "--query", str(some),
                         "--gallery", str(gallery), "--topk", "5", "--output", str(png))
    assert code == 0, err
    rows = table_rows(out)
    assert len(rows) == 5 and rows[0][1:] == ["1", "0.0000", some.name]
    with Image.open(png) as im:
        im.load()
        assert im.size == rank_list_size(1, 5)
    # a gallery .npz of --mode extract is used as it is
    assert main.main(["--mode", "extract", "--checkpoint", str(trained), "--images", str(gallery),
                      "--output", str(tmp_path / "g.npz")]) == 0
    code, out, _ = cli("--mode", "search", "--checkpoint", str(trained), "--query", str(some),
                       "--gallery", str(tmp_path / "g.npz"), "--output", str(tmp_path / "s2.png"))
    assert code == 0 and table_rows(out)[0][1:] == ["1", "0.0000", some.name]


def test_explain_draws_one_picture_per_image(trained, tiny_root, tmp_path):
    from reidlab.models import build_model
    from reidlab.runs.config import build_config
    images = sorted((tiny_root / "synthetic-tiny" / "query").glob("*.jpg"))[:3]
    for f in images:
        (tmp_path / "imgs").mkdir(exist_ok=True)
        (tmp_path / "imgs" / f.name).write_bytes(f.read_bytes())
    checkpoints = {"resnet": str(trained)}
    for name, sets in (("mla", {"model": {"name": "resnet18", "attention": "mla"}}),
                       ("daaf", {"model": {"name": "daaf", "args": {"base": "resnet18"}}})):
        cfg = build_config("demo", [sets, {"data": {"height": 64, "width": 32}}, {"model": {"pretrained": "none"}}])
        m = build_model(cfg.model.name, pretrained="none", input_size=(64, 32), **dict(
            attention="mla") if name == "mla" else dict(base="resnet18"))
        torch.save({"model": m.state_dict(), "config": cfg.to_dict(), "epoch": 0}, tmp_path / f"{name}.pt")
        checkpoints[name] = str(tmp_path / f"{name}.pt")
    for name, ckpt in checkpoints.items():
        out = tmp_path / f"explain-{name}"
        assert main.main(["--mode", "explain", "--checkpoint", ckpt, "--images", str(tmp_path / "imgs"),
                          "--output", str(out)]) == 0
        pictures = sorted(out.glob("*.png"))
        assert [p.name for p in pictures] == sorted(f"{f.stem}_explain.png" for f in images)
        with Image.open(pictures[0]) as im:
            im.load()
            panels = {"resnet": 2, "mla": 4, "daaf": 4}[name]   # image + activation (+ 2 PLA / mask + keypoints)
            assert im.size == (160 * panels, 320)


def test_onnx_export_matches_pytorch(trained, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra (make test installs it)")
    from reidlab.use.export import export_onnx
    from reidlab.use.trained import load_trained
    model, cfg, _, _ = load_trained(str(trained))
    assert export_onnx(model, 32, 16, tmp_path / "m.onnx") < 1e-4
    assert main.main(["--mode", "export", "--checkpoint", str(trained), "--output", str(tmp_path / "cli.onnx")]) == 0
    assert (tmp_path / "cli.onnx").stat().st_size > 1_000_000


def test_export_without_onnx_says_what_to_install(trained, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_onnx(name, *a, **k):
        if name in ("onnx", "onnxruntime"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_onnx)
    from reidlab.errors import ReIDError
    from reidlab.use.export import export_onnx
    with pytest.raises(ReIDError, match="pip install"):
        export_onnx(torch.nn.Identity(), 32, 16, "/tmp/never.onnx")


def test_bad_inputs_stop_with_a_clear_message(trained, tiny_root, tmp_path, main_in_process):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    cases = [
        (["--mode", "extract", "--images", str(tmp_path / "empty"), "--output", str(tmp_path / "x.npz")], "no image"),
        (["--mode", "search", "--query", str(tmp_path / "notes.txt"), "--gallery", str(tmp_path / "empty")],
         "not an image file"),
        (["--mode", "extract", "--images", str(tiny_root / "synthetic-tiny" / "query")], "--output"),
    ]
    for args, words in cases:
        code, _, err = main_in_process(*args, "--checkpoint", str(trained))
        assert code == 2 and words in err and "Traceback" not in err, err
    # a gallery extracted by a checkpoint of another input size
    np.savez(tmp_path / "other.npz", features=np.zeros((3, 512), np.float32), paths=np.array(["a.jpg"] * 3),
             height=256, width=128, dim=512, checkpoint="other/best.pt")
    query = sorted((tiny_root / "synthetic-tiny" / "query").glob("*.jpg"))[0]
    code, _, err = main_in_process("--mode", "search", "--checkpoint", str(trained), "--query", str(query),
                       "--gallery", str(tmp_path / "other.npz"))
    assert code == 2 and "256 x 128" in err and "extract the gallery again" in err, err


def test_evaluate_with_ca_jaccard_re_ranking(trained, tiny_root, capsys):
    """--mode evaluate with test.rerank_distance=ca-jaccard re-ranks with the query and gallery cameras: its
    numbers are those of evaluation.rerank with cameras, and differ from Zhong et al.'s re-ranking's."""
    import json
    got = {}
    for distance in ("jaccard", "ca-jaccard"):
        assert main.main(["--mode", "evaluate", "--checkpoint", str(trained / "last.pt"), "--data-root",
                          str(tiny_root), "--set", "test.rerank=true", "--set",
                          f"test.rerank_distance={distance}"]) == 0
        got[distance] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < got["ca-jaccard"]["mAP"] <= 1 and got["ca-jaccard"]["mAP"] != got["jaccard"]["mAP"]
