"""Cluster Contrast's code and ours from the same initial weights, stage by stage: where do the two codes part?

    python -m benchmarks.parity_step --code /path/to/cluster-contrast-reid --data /path/to/its/data-dir [--seed 1]

Issue 47's way to find why ours and its code end apart (benchmarks/parity_code.py): the same initial weights in both,
then each stage of the first epoch compared number for number. Its code (github:alibaba/cluster-contrast-reid,
patched for the CPU as docs/results.md lists) is imported from ``--code`` and run, never copied; ``--data`` is the
folder its ``-d market1501 --data-dir`` reads, which must hold our ``synthetic-small`` (a link to it). The demo's
values of the parity table (benchmarks/tables/parity_code.yaml): ResNet-18, GeM, 64 x 32, whole-batch BatchNorm.

The stages, each printed with its largest difference and written to ``benchmarks/results/parity_step.json``:
  1. initial weights: its ``create_model`` under the seed, against ours built under the same seed;
  2. the training images as its test transform reads them, against our stored tensors, normalised;
  3. the features of every training image (its ``extract_features`` against ours), eval mode;
  4. the pseudo-labels: its ``compute_jaccard_distance`` and DBSCAN against our ``cluster_epoch``, on the same features;
  5. the memory's initial centroids (its cluster means against ``ClusterMemory.from_clusters``);
  6. the evaluation of the same weights (its ``Evaluator`` against ours): mAP and rank-1;
  7. training steps on identical batches (no augmentation), its model, memory and Adam against ours: the loss, the
     relative gradient difference, the weights and the memory after each step; once in float32 from each code's
     own memory, once in float64 from the same memory;
  8. the random parts, which cannot agree draw for draw, in distribution: its RandomMultipleGallerySampler against
     our PseudoLabelSampler on stage 4's clusters, its RandomErasing against ours; means over many draws with their
     standard errors.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.ablate_tables import RESULTS
from reidlab.data.files import write_atomic

OUT = RESULTS / "parity_step.json"
SETS = ["train.bn_images=0", "train.threads=1"]


class Refused(Exception):
    """A user's mistake: said, exit 2."""


def import_theirs(code: Path):
    """Its modules, imported from its checkout (its train script as a module, for get_data, loaders, create_model)."""
    if not (code / "examples" / "cluster_contrast_train_usl.py").is_file():
        raise Refused(f"--code {code}: no examples/cluster_contrast_train_usl.py there; give the folder of a checkout "
                      f"of github:alibaba/cluster-contrast-reid")
    sys.path[:0] = [str(code), str(code / "examples")]
    import cluster_contrast_train_usl as cc
    from clustercontrast.evaluators import Evaluator, extract_features
    from clustercontrast.models.cm import ClusterMemory
    from clustercontrast.utils.data import transforms as T
    from clustercontrast.utils.data.sampler import RandomMultipleGallerySampler
    from clustercontrast.utils.faiss_rerank import compute_jaccard_distance
    return argparse.Namespace(cc=cc, Evaluator=Evaluator, extract=extract_features, Memory=ClusterMemory, T=T,
                              Sampler=RandomMultipleGallerySampler, jaccard=compute_jaccard_distance)


def their_model(th, seed: int):
    torch.manual_seed(seed)
    try:
        model = th.cc.create_model(argparse.Namespace(arch="resnet18", features=0, dropout=0, pooling_type="gem"))
        return getattr(model, "module", model)             # its DataParallel wrapper (on the CPU: the model alone)
    except (AssertionError, RuntimeError) as e:          # .cuda() on a machine without CUDA
        raise Refused(f"its create_model failed ({e}): patch its code for the CPU first (docs/results.md, \"Parity "
                      f"with Cluster Contrast's code, decided\")") from e


def to_ours(state: dict) -> dict:
    """Its ResNet's state dict under our names: ``base.*`` as it is, its GeM ``gap.p`` (shape 1) as our ``pool.p``
    (a scalar), its BN neck ``feat_bn.*`` as ``neck.bn.*``."""
    out = {}
    for k, v in state.items():
        if k.startswith("base."):
            out[k] = v
        elif k == "gap.p":
            out["pool.p"] = v.reshape(())
        elif k.startswith("feat_bn."):
            out["neck.bn." + k[len("feat_bn."):]] = v
        else:
            raise KeyError(f"a tensor of its model with no counterpart in ours: {k}")
    return out


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


def steps(th, ours_model, theirs_model, cfg, images, labels, feats, n: int, wide: bool, same_memory: bool,
          seed: int) -> list[dict]:
    """``n`` training steps of both codes on the same batches of clustered images, unaugmented."""
    from reidlab.memory import ClusterMemory
    from reidlab.runs.optim import build_optimizer
    from reidlab.data.augment import normalise
    ours_model, theirs_model = [m.double() if wide else m.float() for m in (ours_model, theirs_model)]
    C = int(labels.max()) + 1
    mem_t = th.Memory(feats.shape[1], C, temp=cfg.memory.temp, momentum=cfg.memory.momentum, use_hard=False)
    mem_t.features = F.normalize(torch.stack([feats[labels == c].mean(0) for c in range(C)]), dim=1)
    mem_o = ClusterMemory.from_clusters(feats, labels, init="mean", temp=cfg.memory.temp,
                                        momentum=cfg.memory.momentum, update=cfg.memory.update)
    if same_memory:
        mem_o.features.copy_(mem_t.features)
    if wide:
        mem_t.features, mem_o = mem_t.features.double(), mem_o.double()
    opt_t = torch.optim.Adam([{"params": [p]} for p in theirs_model.parameters() if p.requires_grad],
                             lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)   # as its train script builds it
    opt_o, _ = build_optimizer(ours_model, cfg.train)
    theirs_model.train()
    ours_model.train()
    rng = np.random.default_rng(seed)
    clustered = np.flatnonzero(labels.numpy() >= 0)
    rows = []
    for i in range(n):
        idx = torch.as_tensor(rng.choice(clustered, cfg.train.num_ids * cfg.train.num_instances, replace=False))
        x = normalise(images[idx]).to(torch.float64 if wide else torch.float32)
        y = labels[idx]
        loss_t = mem_t(theirs_model(x), y)
        loss_o = mem_o(ours_model(x).embedding, y)
        opt_t.zero_grad()
        opt_o.zero_grad()
        loss_t.backward()
        loss_o.backward()
        g = [(a.grad, b.grad) for a, b in zip(theirs_model.parameters(), ours_model.parameters()) if a.requires_grad]
        grad = max(float((a - b).norm() / a.norm().clamp(min=1e-30)) for a, b in g)
        opt_t.step()
        opt_o.step()
        rows.append({"step": i, "loss_theirs": float(loss_t), "loss_ours": float(loss_o), "grad_rel": grad,
                     "weights": max(max_diff(a, b) for a, b in zip(theirs_model.parameters(), ours_model.parameters())),
                     "memory": max_diff(mem_t.features, mem_o.features)})
    return rows


def mean_se(values) -> list[float]:
    v = np.asarray(values, dtype=float)
    return [float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))]


def sampler_draws(th, labels: np.ndarray, cams: np.ndarray, P: int, K: int, iters: int, epochs: int) -> dict:
    """Batch statistics of ``epochs`` epochs of ``iters`` batches from its sampler (read as its DataLoader does:
    drop_last, restarted when a pass ends) and from ours, on the same clusters."""
    from reidlab.data.samplers import PseudoLabelSampler
    keep = np.flatnonzero(labels >= 0)
    source = [(str(i), int(labels[i]), int(cams[i])) for i in keep]

    def stats(batches):
        b = np.asarray(batches)
        groups = b.reshape(len(b), -1, K)
        return {"repeats_per_batch": float(np.mean([len(r) - len(np.unique(r)) for r in b])),
                "other_camera_share": float((cams[groups[..., 1:]] != cams[groups[..., :1]]).mean()),
                "distinct_images": float(len(np.unique(b)))}
    out = {"theirs": [], "ours": []}
    for e in range(epochs):
        random.seed(e)
        np.random.seed(e)
        torch.manual_seed(e)
        sampler, flat = th.Sampler(source, K), []
        while len(flat) < iters * P * K:
            ids = [keep[i] for i in iter(sampler)]
            flat += ids[: len(ids) // (P * K) * (P * K)]
        out["theirs"].append(stats([flat[i * P * K:(i + 1) * P * K] for i in range(iters)]))
        ours = PseudoLabelSampler(labels, cams, P, K, np.random.default_rng([99, e]), "drop", "k")
        out["ours"].append(stats(list(ours.batches(iters))))
    return {who: {k: mean_se([r[k] for r in rows]) for k in rows[0]} for who, rows in out.items()}


def erasing_draws(th, n: int, H: int, W: int, seed: int) -> dict:
    """Its RandomErasing (probability 0.5) against ours (``redraw``) on an H x W image, ``n`` draws each."""
    from reidlab.data.augment import erasing_boxes
    random.seed(seed)
    eraser = th.T.RandomErasing(probability=0.5, mean=[1.0, 1.0, 1.0])
    box = np.stack([eraser(torch.zeros(3, H, W))[0].numpy() for _ in range(n)]) > 0
    hit = box.any((1, 2))
    theirs = {"erased": mean_se(hit), "area": mean_se(box[hit].mean((1, 2))),
              "height": mean_se(box[hit].any(2).sum(1)), "width": mean_se(box[hit].any(1).sum(1))}
    er, _, _, h, w = erasing_boxes(n, H, W, torch.Generator().manual_seed(seed), "cpu", 0.5, "redraw")
    ours = {"erased": mean_se(er.numpy()), "area": mean_se((h * w / (H * W))[er].numpy()),
            "height": mean_se(h[er].numpy()), "width": mean_se(w[er].numpy())}
    return {"theirs": theirs, "ours": ours}


def run(code: Path, data: Path, seed: int, n_steps: int, draws: int) -> dict:
    from sklearn.cluster import DBSCAN
    from sklearn.metrics import adjusted_rand_score
    from reidlab.clustering.methods import cluster_epoch
    from reidlab.data.augment import normalise
    from reidlab.evaluation import evaluate_model, extract_features
    from reidlab.memory import ClusterMemory
    from reidlab.runs.config import build_config, parse_override
    from reidlab.runs.loop import start

    th = import_theirs(code)
    torch.set_num_threads(1)
    cfg = build_config("demo", [parse_override(x) for x in [*SETS, f"seed={seed}"]])
    try:
        dataset = th.cc.get_data("market1501", str(data))
    except Exception as e:                                    # its reader's own error (a missing folder)
        raise Refused(f"--data {data}: its market1501 reader failed ({e}); link market1501/Market-1501-v15.09.15 "
                      f"there to our datasets/synthetic-small") from e
    with tempfile.TemporaryDirectory() as tmp:
        s = start(cfg, Path(tmp))
    train_sorted = sorted(dataset.train)
    names = [os.path.basename(f) for f, _, _ in train_sorted]
    pos = {os.path.basename(x.path): i for i, x in enumerate(s.ds.train)}
    if sorted(pos) != sorted(names):
        raise Refused(f"--data {data}: its training images are not ours ({len(names)} against {len(pos)}); link "
                      f"market1501/Market-1501-v15.09.15 there to our datasets/synthetic-small")
    order = torch.as_tensor([pos[n] for n in names])
    images = s.train_images[order]
    cams = np.array([c for _, _, c in train_sorted])
    out: dict = {"seed": seed, "code": str(code), "recipe": "demo", "sets": SETS}

    built = s.model.state_dict()
    theirs = their_model(th, seed)
    mapped = to_ours(theirs.state_dict())
    out["1 initial weights, same seed, before loading"] = max(max_diff(built[k], v) for k, v in mapped.items()
                                                              if v.is_floating_point())
    s.model.load_state_dict(mapped)
    ours = s.model
    loader = th.cc.get_test_loader(dataset, cfg.data.height, cfg.data.width, 64, 0, testset=train_sorted)
    out["2 training images as read"] = max_diff(torch.stack([loader.dataset[i][0] for i in range(64)]),
                                                normalise(images[:64]))
    theirs.eval()
    with torch.no_grad():
        fd, _ = th.extract(theirs, loader, print_freq=10 ** 6)
    f_t = torch.cat([fd[f].unsqueeze(0) for f, _, _ in train_sorted], 0)
    f_o = extract_features(ours, images, s.device, 64, description="train features")
    out["3 features"] = max_diff(f_t, f_o)
    c = cfg.cluster
    lab_t = DBSCAN(eps=c.eps, min_samples=c.min_samples, metric="precomputed", n_jobs=-1).fit_predict(
        th.jaccard(f_t, k1=c.k1, k2=c.k2, search_option=3))
    lab_o = cluster_epoch(f_t.clone(), c, cams, 1, seed).labels
    out["4 pseudo-labels"] = {"ari": float(adjusted_rand_score(lab_t, lab_o)),
                              "clusters": [int(lab_t.max()) + 1, int(lab_o.max()) + 1],
                              "outliers": [int((lab_t < 0).sum()), int((lab_o < 0).sum())]}
    labels = torch.as_tensor(lab_t)
    C = int(labels.max()) + 1
    mem_t = F.normalize(torch.stack([f_t[labels == k].mean(0) for k in range(C)]), dim=1)
    out["5 memory centroids"] = max_diff(mem_t, ClusterMemory.from_clusters(f_t, labels).features)
    test_loader = th.cc.get_test_loader(dataset, cfg.data.height, cfg.data.width, 64, 0)
    cmc, mAP = th.Evaluator(theirs).evaluate(test_loader, dataset.query, dataset.gallery, cmc_flag=True)
    r = evaluate_model(ours, s.query_images, s.gallery_images, s.ds.query, s.ds.gallery, s.device, 64)
    out["6 evaluation"] = {"mAP": [float(mAP), r["mAP"]], "rank1": [float(cmc[0]), r["rank1"]]}
    start_state = {k: v.clone() for k, v in theirs.state_dict().items()}
    for wide, same in ((False, False), (True, True)):
        theirs.load_state_dict(start_state)
        ours.load_state_dict(to_ours(start_state))
        key = "7 steps, float64, same memory" if wide else "7 steps, float32, each code's own memory"
        out[key] = steps(th, ours, theirs, cfg, images, labels, f_t, n_steps, wide, same, seed)
    t = cfg.train
    out["8 sampler, per epoch (mean, s.e.)"] = sampler_draws(th, lab_t, cams, t.num_ids, t.num_instances,
                                                             t.iters, 20)
    out["8 random erasing (mean, s.e.)"] = erasing_draws(th, draws, cfg.data.height, cfg.data.width, seed)
    return out


def show(out: dict) -> None:
    for k, v in out.items():
        if k.startswith("7"):
            print(k)
            for r in v:
                print(f"  step {r['step']}: loss {r['loss_theirs']:.6f} / {r['loss_ours']:.6f}, gradient "
                      f"{r['grad_rel']:.1e} (relative), weights {r['weights']:.1e}, memory {r['memory']:.1e}")
        elif k[0].isdigit():
            print(f"{k}: {json.dumps(v) if isinstance(v, dict) else f'{v:.2e}'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--code", type=Path, required=True,
                   help="a checkout of Cluster Contrast's code, patched for the CPU")
    p.add_argument("--data", type=Path, required=True, help="its --data-dir, whose market1501 is our synthetic-small")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--draws", type=int, default=100000, help="random erasing draws per code")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    try:
        if a.steps < 1 or a.draws < 100:
            raise Refused("--steps must be 1 or more and --draws 100 or more")
        out = run(a.code.resolve(), a.data.resolve(), a.seed, a.steps, a.draws)
    except Refused as e:
        print(f"parity_step: {e}", file=sys.stderr)
        return 2
    show(out)
    write_atomic(a.out, (json.dumps(out, indent=1) + "\n").encode())
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
