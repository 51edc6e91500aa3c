"""The Python API (use/api.py, docs/api.md): the page's example runs as written; every input kind gives the
features of the same images as a folder does; no progress bar, no logging set-up; mistakes are clear."""
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import main
from benchmarks.own_data import scrambled_copy
from reidlab.errors import ReIDError
from tests.test_unsup import TINY
from reidlab.use.api import Features, TrainedModel

DOC = Path(__file__).parent.parent / "docs" / "api.md"


@pytest.fixture(scope="module")
def place(tiny_root, tmp_path_factory):
    """A folder as the page's example expects it: outputs/demo (one tiny epoch), my_crops/, query.jpg."""
    where = tmp_path_factory.mktemp("api")
    assert main.main([*TINY, "--data-root", str(tiny_root), "--output", str(where / "outputs"), "--name", "demo",
                      "--epochs", "1"]) == 0
    train = tiny_root / "synthetic-tiny" / "bounding_box_train"
    scrambled_copy(train, where / "my_crops")
    (where / "my_crops" / "broken.jpg").write_bytes(b"not a jpeg")
    shutil.copy(sorted((tiny_root / "synthetic-tiny" / "query").glob("*.jpg"))[0], where / "query.jpg")
    return where


def test_the_pages_example_runs(place, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(place)
    exec(compile(code, str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert "200 images, 512 dimensions, skipped: [('" in out and "broken.jpg" in out
    assert (place / "gallery.npz").is_file()


def test_every_input_kind_gives_the_folders_features(place, capsys):
    handlers = (list(logging.getLogger().handlers), list(logging.getLogger("reidlab").handlers))
    model = TrainedModel.load(place / "outputs" / "demo", device="cpu")
    capsys.readouterr()
    folder = model.extract(place / "my_crops")
    files = [place / "my_crops" / p for p in folder.paths[:6]]
    H, W = model.input_size
    pil = [Image.open(f).convert("RGB") for f in files]
    arrays = [np.array(p.resize((W, H), Image.BICUBIC if model.config.data.resize == "bicubic" else
                                Image.BILINEAR)) for p in pil]
    kinds = {"paths": files, "pil": pil, "numpy": arrays,
             "tensor": torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays])}
    for name, images in kinds.items():
        got = model.extract(images)
        assert torch.allclose(got.features, folder.features[:6], atol=1e-5), name
    one = model.extract(kinds["tensor"][0])
    assert one.features.shape == (1, model.dim) and one.paths == ["image_0"]
    out, err = capsys.readouterr()                # the broken file's warning, through the reidlab logger only
    assert "features of" not in out + err and "━" not in out + err and "skipped unreadable" in out
    assert (list(logging.getLogger().handlers), list(logging.getLogger("reidlab").handlers)) == handlers
    hits = model.search(files[:2], folder, topk=4)
    assert [h[0].path for h in hits] == folder.paths[:2] and hits[0][0].distance < 1e-4
    assert all(a.distance <= b.distance for h in hits for a, b in zip(h, h[1:]))
    d = model.distances(files[:2], folder)
    assert d.shape == (2, len(folder)) and float(d[0, hits[0][1].index]) == pytest.approx(hits[0][1].distance)
    folder.save(place / "g.npz")
    back = Features.load(place / "g.npz")
    assert back.paths == folder.paths and torch.equal(back.features, folder.features) and back.size == (H, W)


def test_api_mistakes(place, tmp_path):
    model = TrainedModel.load(place / "outputs" / "demo", device="cpu")
    for images, words in (([], "no images"), (torch.zeros(2, 3, 8, 8), "must be uint8"),
                          (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "must be uint8"),
                          ([np.zeros((4, 4, 2), np.uint8)], "H x W x 3"), ([1, 2], "is a int"),
                          ([str(place / "query.jpg"), Image.new("RGB", (4, 4))], "is a str"),
                          ([place / "my_crops" / "broken.jpg"], "cannot be read"),
                          (tmp_path / "nothing", "no image or folder")):
        with pytest.raises(ReIDError, match=words):
            model.extract(images)
    with pytest.raises(ReIDError, match="topk"):
        model.search(place / "query.jpg", place / "query.jpg", topk=0)
    other = Features(torch.zeros(3, 7), ["a", "b", "c"], size=model.input_size)
    with pytest.raises(ReIDError, match="7-d features"):
        model.search(place / "query.jpg", other)
    foreign = model.extract(place / "query.jpg")
    foreign.digest = "0123456789abcdef"
    with pytest.raises(ReIDError, match="another model"):
        model.search(place / "query.jpg", foreign)
    with pytest.raises(ReIDError, match="no checkpoint"):
        TrainedModel.load(tmp_path)
    with pytest.raises(ReIDError, match=r"\.npz"):
        foreign.save(tmp_path / "g.txt")
