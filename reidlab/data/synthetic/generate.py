"""The synthetic re-ID benchmark: a procedural, seeded Market-1501-format tree with teacher annotations.

Layout written under ``<data-root>/synthetic-<size>/`` (``synthetic-occluded-<size>/`` for the occluded
variant; ``...-seed<N>`` for a generator seed other than 0)::

    bounding_box_train/PPPP_cCsS_FFFFFF_NN.jpg   training images
    bounding_box_test/...                        gallery, with distractors (0000) and junk (-1) as Market has
    query/...                                    one image per identity and camera, as Market
    annotations/keypoints.json                   {"keypoint_names": [17 COCO names],
                                                  "images": {"query/0001_c1s1_000001_00.jpg": [[x, y, v] x 17]}}
    annotations/parsing/<folder>/<stem>.png      uint8 part labels (see data.synthetic.render.PARTS)
    annotations/masks/<folder>/<stem>.png        uint8 person mask, 0 or 255
    README.txt, .complete                        description; parameters of a finished generation

That annotation format is what an external pose estimator or human parser can write for a real
dataset (data.annotations reads it by image name).

Generation is safe to run from several processes at once: it happens under a lock file in the data
root, into a temporary folder that is renamed into place when complete, so a reader never sees a
half-written tree and a killed generation leaves nothing in place of the benchmark.

Identities come in look-alike groups that differ in one or two attributes, so colour alone does not
separate them; every camera has its own scene, light, colour cast, viewpoint habits, scale, blur,
noise and JPEG quality, and every image its own walking pose. The occluded variant covers 20-60% of
every query (and a fifth of the training and a tenth of the gallery images) with objects or other
people and marks the covered keypoints v = 1.

Harder variants (``hard``, ``data.synthetic_hard``; each switch alone or several, written to
``synthetic-<size>-hard-<switches>/``, or ``-hard/`` with all five, so that the default trees and the tables
measured on them stay as they were):

- ``lookalike``: clothing from the colours of real crowds (dark, navy, grey, white, brown, beige, denim; mostly
  plain) shared by many persons, so that identity lies in details: bag, shoes, logo, hair, hat, build;
- ``crops``: detector-style boxes, loose or tight (scale 0.8-1.3) and off-centre (up to 15% / 10%), which cut
  heads, feet, arms;
- ``crowd``: in 30% of the person images a second person partly in the box, behind or in front of the target;
- ``viewpoint``: view-dependent details: a logo on 60% of persons (front view only) and a print on the back of
  50% (back view only), beside the backpack seen whole from behind and as straps from the front;
- ``camera``: per camera a sensor resolution (35-100%, scaled back up), a colour response curve, a stronger cast,
  blur, noise and JPEG loss, and a cluttered scene.

Masks, parsing and keypoints follow every switch exactly (the target's pixels only: a person behind it is not
in its mask, one in front removes what it covers and hides the keypoints there). With any switch,
``annotations/meta.json`` records per image what the switches did (the crop's scale and offset, the second
person's side and shift).
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from reidlab.progress import track

from reidlab.errors import DatasetError, ReIDError

from ..files import check_names, disk_error, locked, nearest_existing
from . import render as pr

log = logging.getLogger(__name__)
GENERATOR_VERSION = 3
HARD = ("lookalike", "crops", "crowd", "viewpoint", "camera")
CROWD_SHARE = 0.3                 # person images with a second person in the box (the crowd switch)


@dataclass(frozen=True)
class SizeSpec:
    train_ids: int
    test_ids: int
    train_images: int
    query_images: int
    gallery_images: int   # including distractors and junk
    distractors: int
    junk: int
    cameras: int
    height: int
    width: int


SIZES = {
    # tests: a few hundred images, generated in seconds
    "tiny": SizeSpec(16, 16, 200, 48, 170, 10, 6, 4, 64, 32),
    # the CPU demo: about 4,000 training images at 128x64
    "small": SizeSpec(200, 200, 4000, 800, 4300, 200, 100, 6, 128, 64),
    # Market-1501's counts and resolution
    "market": SizeSpec(751, 750, 12936, 3368, 19732, 2793, 3819, 6, 256, 128),
    # a population to pretrain on, as ImageNet is to the papers (the pretrain_* recipes, generator seed
    # PRETRAIN_SEED: persons the evaluation sets never hold, ``shared_identities``): 2,000 training identities,
    # 30,000 images at the CPU ablations' 128 x 64, and a small test split to watch the pretraining on
    "pretrain": SizeSpec(2000, 100, 30000, 300, 1600, 100, 50, 6, 128, 64),
}
PRETRAIN_SEED = 1000


def shared_identities(a: tuple[str, int], b: tuple[str, int], occluded: bool = False) -> int:
    """How many persons two generations (size, seed) both hold: identical appearance records (every attribute,
    the body's height and width included). 0 between the pretraining population and an evaluation set means
    no person of the one appears in the other."""
    first = {repr(i) for i in _plan(SIZES[a[0]], occluded, a[1])[0]}
    return sum(repr(i) in first for i in _plan(SIZES[b[0]], occluded, b[1])[0])


def hard_switches(hard) -> tuple[str, ...]:
    """The harder generator's switches in HARD's order ("all": every one); an unknown name is an error."""
    names = list(hard or ())
    if "all" in names:
        names = list(HARD)
    unknown = [h for h in names if h not in HARD]
    if unknown:
        raise DatasetError(f"unknown synthetic switch(es) {', '.join(unknown)}; give any of {', '.join(HARD)}, or all")
    return tuple(h for h in HARD if h in names)


def hard_suffix(hard) -> str:
    switches = hard_switches(hard)
    if not switches:
        return ""
    return "-hard" if switches == HARD else "-hard-" + "-".join(switches)


def dataset_dir(root: str | os.PathLike, size: str, occluded: bool, seed: int = 0, hard=()) -> Path:
    name = (f"synthetic-occluded-{size}" if occluded else f"synthetic-{size}") + hard_suffix(hard)
    return Path(root) / (name if seed == 0 else f"{name}-seed{seed}")


def _is_complete(out: Path, params: dict) -> bool | None:
    """True: a finished generation with these parameters; False: one with others; None: no marker."""
    marker = out / ".complete"
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text()) == params
    except (json.JSONDecodeError, OSError):
        return False


def ensure_synthetic(root: str | os.PathLike, size: str = "small", occluded: bool = False, seed: int = 0,
                     workers: int | None = None, hard=()) -> Path:
    """Return the benchmark's folder, generating it first if it is missing (see the module docstring)."""
    if size not in SIZES:
        raise DatasetError(f"unknown synthetic size {size!r}; choose one of {', '.join(SIZES)}")
    if not isinstance(seed, int) or seed < 0:
        raise DatasetError(f"data.synthetic_seed: a whole number >= 0, not {seed!r}")
    hard = hard_switches(hard)
    out = dataset_dir(root, size, occluded, seed, hard)
    params = {"version": GENERATOR_VERSION, "size": size, "occluded": occluded, "seed": seed,
              "spec": asdict(SIZES[size])}
    if hard:                           # absent without switches: the default trees' markers are unchanged
        params["hard"] = list(hard)
    return ensure_tree(out, params, lambda tmp: generate(tmp, SIZES[size], occluded=occluded, seed=seed,
                                                         workers=workers, title=out.name, hard=hard),
                       "the synthetic benchmark")


def ensure_tree(out: Path, params: dict, make, what: str) -> Path:
    """``out``, made by ``make(tmp)`` into a temporary folder beside it and renamed into place, unless a finished
    generation with these ``params`` is there (its ``.complete`` marker). Under a lock file in the data root, so
    that several processes can ask at once: one generates, the others wait and read it. A killed generation
    leaves nothing in place of the tree; a tree of other parameters is replaced; a folder without the marker is
    left alone (an error says so)."""
    if _is_complete(out, params):
        return out
    root = out.parent
    try:
        check_names(root, "the data root")
    except ReIDError as e:
        raise DatasetError(f"{e} (--data-root, or env REID_DATA)") from None
    existing = nearest_existing(root)
    if not existing.is_dir():
        raise DatasetError(f"{what} must be generated under {root}, but {existing} is a file, not a "
                           f"folder; give a folder with --data-root (or env REID_DATA)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = root / f".{out.name}.lock"
        lock.touch()
    except OSError as e:
        raise DatasetError(f"{what} must be generated under {root}, but it cannot be written "
                           f"there ({e.strerror}); give a writable folder with --data-root (or env REID_DATA)"
                           ) from None
    with locked(lock):
        state = _is_complete(out, params)         # another process may have finished it while we waited
        if state:
            return out
        if state is None and out.exists():
            raise DatasetError(f"{out} exists but is not a complete generated tree (no .complete marker); "
                               f"it is left alone: remove it (rm -r {out}) to generate it again")
        for stale in root.glob(f".{out.name}.tmp-*"):     # left by killed generations (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".{out.name}.tmp-{os.getpid()}"
        try:
            make(tmp)
            (tmp / ".complete").write_text(json.dumps(params))
        except OSError as e:                         # a full disk, a quota: nothing half-made is left
            shutil.rmtree(tmp, ignore_errors=True)
            raise disk_error(e, out, what + " " + out.name) from None
        except BaseException:                        # Ctrl-C, an error: nothing half-made is left either
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists():                             # an older generator version's tree: replace it
            log.warning("%s was generated with other parameters; replacing it", out)
            old = root / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------------------------
# planning: which identity, camera and kind of image each file is


@dataclass
class _Job:
    folder: str
    name: str
    kind: str            # "person" | "distractor" | "junk"
    ident: int           # index into the identity list (-1 for junk)
    cam: int             # 0-based camera index
    occlude: bool
    seed: tuple


def _group_identities(rng: np.random.Generator, n: int, hard=()) -> list[pr.Identity]:
    """n identities in look-alike groups of 2-4 that differ in one or two attributes."""
    out: list[pr.Identity] = []
    while len(out) < n:
        base = pr.random_identity(rng, realistic="lookalike" in hard, prints="viewpoint" in hard)
        out.append(base)
        for _ in range(int(rng.integers(1, 4))):
            if len(out) < n:
                out.append(base.mutate(rng, int(rng.integers(1, 3))))
    order = rng.permutation(n)
    return [out[i] for i in order]


def _counts(rng: np.random.Generator, total: int, mins: np.ndarray) -> np.ndarray:
    extra = total - int(mins.sum())
    if extra < 0:
        raise ValueError("more minimum images than the total")
    return mins + rng.multinomial(extra, rng.dirichlet(np.full(len(mins), 4.0)))


def _camera_sets(rng: np.random.Generator, n_ids: int, n_cams: int, total: int | None) -> list[np.ndarray]:
    """Cameras each identity appears in (at least two). With ``total``, the sizes sum to it."""
    sizes = np.full(n_ids, 2)
    if total is None:
        sizes = rng.integers(2, n_cams + 1, size=n_ids)
    else:
        while sizes.sum() < total:
            room = np.flatnonzero(sizes < n_cams)
            sizes[rng.choice(room)] += 1
    return [np.sort(rng.choice(n_cams, size=s, replace=False)) for s in sizes]


def _plan(spec: SizeSpec, occluded: bool, seed: int, hard=()) -> tuple[list[pr.Identity], list[_Job]]:
    rng = np.random.default_rng(seed)
    n_ids = spec.train_ids + spec.test_ids
    idents = _group_identities(rng, n_ids, hard)
    # Look-alike groups are shuffled across the splits, so both halves hold look-alikes.
    pids = rng.permutation(np.arange(1, n_ids + 1))
    train_ids, test_ids = np.arange(spec.train_ids), np.arange(spec.train_ids, n_ids)
    frames = np.zeros(spec.cameras, int)
    used_names: set[str] = set()
    jobs: list[_Job] = []

    def name(pid: int, cam: int) -> str:
        while True:
            frames[cam] += int(rng.integers(1, 40))
            seq = 1 + int(rng.integers(6))
            nm = f"{pid:04d}_c{cam + 1}s{seq}_{frames[cam]:06d}_{int(rng.integers(0, 3)):02d}.jpg"
            if pid < 0:
                nm = "-1" + nm[4:]
            if nm not in used_names:
                used_names.add(nm)
                return nm

    def add(folder, kind, ident, cam, pid, occ):
        jobs.append(_Job(folder, name(pid, cam), kind, ident, cam, occ, (seed, len(jobs))))

    train_cams = _camera_sets(rng, spec.train_ids, spec.cameras, None)
    mins = np.array([len(c) for c in train_cams])
    for i, n in zip(train_ids, _counts(rng, spec.train_images, mins)):
        cams = train_cams[i]
        for k in range(n):
            cam = cams[k] if k < len(cams) else rng.choice(cams)
            add("bounding_box_train", "person", int(i), int(cam), int(pids[i]), occluded and rng.random() < 0.2)
    test_cams = _camera_sets(rng, spec.test_ids, spec.cameras, spec.query_images)
    for t, i in enumerate(test_ids):
        for cam in test_cams[t]:
            add("query", "person", int(i), int(cam), int(pids[i]), occluded)
    real = spec.gallery_images - spec.distractors - spec.junk
    mins = np.array([len(c) for c in test_cams])
    for t, (i, n) in enumerate(zip(test_ids, _counts(rng, real, mins))):
        cams = test_cams[t]
        for k in range(n):
            cam = cams[k] if k < len(cams) else rng.choice(cams)
            add("bounding_box_test", "person", int(i), int(cam), int(pids[i]), occluded and rng.random() < 0.1)
    for _ in range(spec.distractors):
        add("bounding_box_test", "distractor", -1, int(rng.integers(spec.cameras)), 0, False)
    for _ in range(spec.junk):
        add("bounding_box_test", "junk", -1, int(rng.integers(spec.cameras)), -1, False)
    return idents, jobs


# ---------------------------------------------------------------------------------------------
# rendering (runs in worker processes)

_STATE: dict = {}


def _init_worker(idents, cameras, spec, out, hard=()):
    _STATE.update(idents=idents, cameras=cameras, spec=spec, out=out, hard=hard)


def _render_job(job: _Job) -> tuple[str, list, dict]:
    idents, cameras, spec, out = _STATE["idents"], _STATE["cameras"], _STATE["spec"], _STATE["out"]
    hard = _STATE.get("hard", ())
    H, W = spec.height, spec.width
    rng = np.random.default_rng(job.seed)
    cam = cameras[job.cam]
    bg = pr.background_crop(cam, rng, H, W)
    meta: dict = {}
    if job.kind == "junk":   # a detector's false positive: background only
        image, parsing, kps = bg.copy(), np.zeros((H, W), np.uint8), np.zeros((17, 3), np.float32)
    else:
        ident = idents[job.ident] if job.kind == "person" else pr.random_identity(rng)
        person, parsing, kps = pr.render_person(ident, cam, rng, H, W)
        if "crops" in hard and job.kind == "person":
            person, parsing, kps, meta["crop"] = pr.detector_crop(person, parsing, kps, rng)
        if job.kind == "distractor":  # a badly aligned detection: the person shifted half out
            dy, dx = int(rng.integers(-H // 2, H // 2)), int(rng.integers(-W // 2, W // 2))
            person, parsing = np.roll(person, (dy, dx), (0, 1)), np.roll(parsing, (dy, dx), (0, 1))
            kps = kps.copy()
            kps[:, 0] += dx
            kps[:, 1] += dy
            kps[(kps[:, 0] < 0) | (kps[:, 0] >= W) | (kps[:, 1] < 0) | (kps[:, 1] >= H), 2] = 0
        if "crowd" in hard and job.kind == "person" and rng.random() < CROWD_SHARE:
            other = pr.random_identity(rng, realistic="lookalike" in hard, prints="viewpoint" in hard)
            op, opars, _ = pr.render_person(other, cam, rng, H, W)
            image, parsing, kps, meta["crowd"] = pr.crowd(pr.compose(person, parsing, bg), parsing, kps, (op, opars),
                                                         bg, person, rng)
        else:
            image = pr.compose(person, parsing, bg)
        if job.occlude:
            other = None
            if rng.random() < 0.35:
                op, opars, _ = pr.render_person(pr.random_identity(rng), cam, rng, H, W)
                other = (op, opars)
            image, parsing, kps = pr.add_occluder(image, parsing, kps, rng, other)
    pil = pr.camera_optics(image, cam, rng)
    stem = job.name[:-4]
    pil.save(out / job.folder / job.name, quality=cam.jpeg_quality)
    Image.fromarray(parsing).save(out / "annotations" / "parsing" / job.folder / f"{stem}.png")
    mask = Image.fromarray(((parsing > 0) * 255).astype(np.uint8))
    mask.save(out / "annotations" / "masks" / job.folder / f"{stem}.png")
    kps = np.round(kps, 2)
    if hard:                   # a keypoint that rounding puts on the border is outside (the default trees as ever)
        kps[(kps[:, 0] >= W) | (kps[:, 1] >= H) | (kps[:, 0] < 0) | (kps[:, 1] < 0), 2] = 0
    return f"{job.folder}/{job.name}", kps.tolist(), meta


def generate(out: Path, spec: SizeSpec, occluded: bool = False, seed: int = 0, workers: int | None = None,
             title: str = "", hard=()) -> None:
    """Write the whole tree into ``out`` (see the module docstring). Deterministic from ``seed`` (and ``hard``,
    the harder generator's switches)."""
    hard = hard_switches(hard)
    idents, jobs = _plan(spec, occluded, seed, hard)
    cam_rng = np.random.default_rng([seed, 7919])
    cameras = [pr.random_camera(cam_rng, spec.height, spec.width, hard="camera" in hard)
               for _ in range(spec.cameras)]
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        for sub in (Path(folder), Path("annotations/parsing") / folder, Path("annotations/masks") / folder):
            (out / sub).mkdir(parents=True, exist_ok=True)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    label = f"generating {title or out.name} ({len(jobs)} images)"
    keypoints: dict[str, list] = {}
    metas: dict[str, dict] = {}
    if workers > 1 and "fork" in mp.get_all_start_methods():
        with mp.get_context("fork").Pool(workers, _init_worker, (idents, cameras, spec, out, hard)) as pool:
            for key, kps, meta in track(pool.imap(_render_job, jobs, chunksize=32), total=len(jobs),
                                        description=label):
                keypoints[key], metas[key] = kps, meta
    else:
        _init_worker(idents, cameras, spec, out, hard)
        for job in track(jobs, description=label):
            key, kps, meta = _render_job(job)
            keypoints[key], metas[key] = kps, meta
    (out / "annotations" / "keypoints.json").write_text(
        json.dumps({"keypoint_names": list(pr.COCO_KEYPOINTS), "images": keypoints}))
    if hard:
        (out / "annotations" / "meta.json").write_text(json.dumps({"switches": list(hard), "images": metas}))
    (out / "README.txt").write_text(__doc__ + (f"\nThis tree's switches: {', '.join(hard)}\n" if hard else ""))
    log.info("generated %s: %d images", title or out.name, len(jobs))
