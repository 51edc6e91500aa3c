"""The harder synthetic generator (data.synthetic_hard): each switch does what it says, the annotations stay exact,
generation is seeded, and the default trees (and the tables measured on them) are untouched."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidlab.data import build_dataset
from reidlab.data.synthetic import render as pr
from reidlab.data.synthetic.generate import HARD, SIZES, _plan, dataset_dir, ensure_synthetic, hard_switches
from reidlab.errors import DatasetError


@pytest.fixture(scope="module")
def hard_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hard")
    ensure_synthetic(root, "tiny", hard=["all"], workers=2)
    ensure_synthetic(root, "tiny", occluded=True, hard=["all"], workers=2)
    return root


def annotations(tree: Path, folder: str = "bounding_box_train"):
    kps = json.loads((tree / "annotations" / "keypoints.json").read_text())["images"]
    for f in sorted((tree / folder).glob("*.jpg")):
        key = f"{folder}/{f.name}"
        parsing = np.array(Image.open(tree / "annotations" / "parsing" / folder / f"{f.stem}.png"))
        mask = np.array(Image.open(tree / "annotations" / "masks" / folder / f"{f.stem}.png"))
        yield key, np.array(kps[key]), parsing, mask


def test_names_and_the_default_trees_untouched(tmp_path):
    assert dataset_dir(tmp_path, "small", False) == tmp_path / "synthetic-small"
    assert dataset_dir(tmp_path, "small", False, hard=["all"]) == tmp_path / "synthetic-small-hard"
    named = dataset_dir(tmp_path, "tiny", True, 2, ["crowd", "crops"])
    assert named == tmp_path / "synthetic-occluded-tiny-hard-crops-crowd-seed2"
    assert hard_switches(["all"]) == HARD
    with pytest.raises(DatasetError, match="unknown synthetic switch"):
        hard_switches(["blur"])
    plain = ensure_synthetic(tmp_path, "tiny", workers=1)
    assert "hard" not in json.loads((plain / ".complete").read_text())      # the marker of earlier trees
    assert not (plain / "annotations" / "meta.json").exists()


def test_seeded_and_exact(hard_root, tmp_path):
    again = ensure_synthetic(tmp_path, "tiny", hard=["all"], workers=1)
    tree = hard_root / "synthetic-tiny-hard"
    files = sorted(p.relative_to(tree) for p in tree.rglob("*") if p.suffix in (".jpg", ".png", ".json"))
    assert files and all((tree / f).read_bytes() == (again / f).read_bytes() for f in files)
    for occluded in ("synthetic-tiny-hard", "synthetic-occluded-tiny-hard"):
        for folder in ("bounding_box_train", "query", "bounding_box_test"):
            for key, kps, parsing, mask in annotations(hard_root / occluded, folder):
                assert np.array_equal(mask > 0, parsing > 0), key
                H, W = parsing.shape
                inside = (kps[:, 0] >= 0) & (kps[:, 0] < W) & (kps[:, 1] >= 0) & (kps[:, 1] < H)
                assert np.all(inside[kps[:, 2] > 0]) and not np.any(kps[~inside, 2] > 0), key


def test_crops_cut_and_move_the_person(hard_root, tiny_root):
    tree = hard_root / "synthetic-tiny-hard"
    meta = json.loads((tree / "annotations" / "meta.json").read_text())
    assert meta["switches"] == list(HARD)
    crops = [m["crop"] for k, m in meta["images"].items() if "crop" in m]
    people = [k for k in meta["images"] if not Path(k).name.startswith(("0000", "-1"))]
    assert len(crops) == len(people)                                  # every person image is boxed
    scales = np.array([c["scale"] for c in crops])
    assert scales.min() >= 0.8 and scales.max() <= 1.3 and scales.std() > 0.08

    def cut_share(t):
        return np.mean([np.mean(k[:, 2] == 0) for _, k, _, _ in annotations(t)])
    assert cut_share(tree) > cut_share(tiny_root / "synthetic-tiny") + 0.03   # heads, feet, arms cut off


def test_crowd_puts_a_second_person_behind_or_in_front(hard_root):
    tree = hard_root / "synthetic-tiny-hard"
    meta = json.loads((tree / "annotations" / "meta.json").read_text())["images"]
    crowd = {k: m["crowd"]["crowd"] for k, m in meta.items() if "crowd" in m}
    people = [k for k in meta if "crop" in meta[k]]
    assert 0.15 < len(crowd) / len(people) < 0.45 and set(crowd.values()) == {"front", "behind"}
    hidden = {k: np.sum(kps[:, 2] == 1) for k, kps, _, _ in annotations(tree)}
    front = [hidden[k] for k, side in crowd.items() if side == "front" and k in hidden]
    alone = [hidden[k] for k in hidden if k not in crowd]
    assert np.mean(front) > np.mean(alone)                            # the person in front hides keypoints


def test_lookalike_shares_realistic_clothing():
    plain, _ = _plan(SIZES["small"], False, 0)
    alike, _ = _plan(SIZES["small"], False, 0, hard=("lookalike",))
    assert all(i.realistic for i in alike) and not any(i.realistic for i in plain)
    assert max(i.upper_colour for i in alike) < len(pr.REAL_PALETTE)

    def same_outfit(idents):
        """The chance that two persons drawn at random wear the same colours (upper, lower)."""
        outfits = [(i.upper_colour, i.lower_colour) for i in idents]
        n = len(outfits)
        return sum(outfits.count(o) * (outfits.count(o) - 1) for o in set(outfits)) / (n * (n - 1))
    assert same_outfit(alike) > 2 * same_outfit(plain)                # measured 2.3% against 0.9%
    plain_mean = np.mean([pr.PALETTE[i.upper_colour].std() for i in plain])
    alike_mean = np.mean([pr.REAL_PALETTE[i.upper_colour].std() for i in alike])
    assert alike_mean < 0.7 * plain_mean                              # less saturated


def test_viewpoint_details_show_from_one_side_only():
    rng = np.random.default_rng(0)
    idents, _ = _plan(SIZES["small"], False, 0, hard=("viewpoint",))
    assert 0.4 < np.mean([i.back_print is not None for i in idents]) < 0.6
    assert 0.5 < np.mean([i.logo is not None for i in idents]) < 0.7
    cam = pr.random_camera(rng, 128, 64)
    ident = next(i for i in idents if i.back_print is not None and i.bag != "backpack")
    colour = pr.PALETTE[ident.back_print]

    def print_pixels(view):
        image, parsing, _ = pr.render_person(ident, cam, np.random.default_rng(1), 128, 64, view=view)
        torso = parsing == 2
        return int((np.abs(image - colour).max(-1)[torso] < 30).sum())
    # the print's colour may also be the clothes': then it adds pixels in the back view only
    assert print_pixels("back") > print_pixels("front") + 20


def test_camera_switch_changes_resolution_and_response(hard_root):
    rng = np.random.default_rng(0)
    cams = [pr.random_camera(rng, 128, 64, hard=True) for _ in range(20)]
    assert all({"resolution", "gamma"} <= set(c.extra) for c in cams)
    res = [c.extra["resolution"] for c in cams]
    assert min(res) < 0.6 and max(res) > 0.8
    flat = np.full((128, 64, 3), 128, np.float32)
    flat[:, 32:] = 40                                                 # a sharp edge
    low = min(cams, key=lambda c: c.extra["resolution"])
    low.noise, low.blur = 0.0, 0.0
    edge = np.abs(np.diff(np.asarray(pr.camera_optics(flat, low, rng)).astype(float).mean(-1), axis=1)).max()
    assert edge < 80                                                  # the 88-level step is smeared over pixels
    ds = build_dataset("synthetic", hard_root, synthetic_size="tiny", hard=("all",))
    assert ds.name == "synthetic-tiny-hard" and len(ds.train) == SIZES["tiny"].train_images


def test_config_names_the_switches(tmp_path):
    import main
    assert main.main(["--set", "data.synthetic_hard=[blur]", "--print-config"]) == 2
