"""SAP's Table 3 on ``synthetic-occluded`` with noisy teachers, same seed and budget for every row, and the
row the paper's point rests on: the student against a partition taken from the teacher alone.

    python -m benchmarks.sap_ablation                             # every row, seed 1
    python -m benchmarks.sap_ablation --variants Base. "Base. +S-patch +S-proxy" --seeds 2 3
    python -m benchmarks.sap_ablation --size base --height 256 --width 128 --epochs 60 \\
        --pretrained imagenet --synthetic-size market --device cuda     # the GPU version

Rows (runs/recipes/sap_occluded_duke.yaml at CPU scale): Base. (the same student, no teacher
supervision), +S-patch, +S-proxy, both (SAP), both without MAPR, both without SSD, and "teacher
partition": the same ViT whose part features pool its patch tokens by the teacher's parsing (which it
then needs at test time too). The teacher is the synthetic benchmark's parsing degraded as a noisy
parser's (``teacher.noisy``: shifted by up to 3% of the height, up to 2 holes).

CPU scale: synthetic-small read at 128 x 64, ViT-``--size`` (tiny: D 192) with ``--depth`` (4) layers from
scratch, 5 px patch overlap (stride 11: 11 x 5 patches), the part stage of the paper (2 layers, 8 heads,
7 proxies: the synthetic parsing's labels), ``--epochs`` (8) with the recipe's schedule shape.

Each student row also measures whether its attention follows the teacher's partition
(reidlab.models.sap.attention_in_part on 256 query images with the training teacher's parsing): the share
of each patch's attention on the patches of its own part, for the MSA heads and the distilled heads, and
of each proxy's DA attention on its part's patches, each beside a uniform attention's share.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import (common_sets, drop_checkpoints, output_folder, print_table, result_row, save_rows,
                               synthetic_arguments, train_run)
from reidlab.runs.run import setup_logging

VARIANTS = {
    "Base.": dict(semi_patch=False, semi_proxy=False),
    "Base. +S-patch": dict(semi_patch=True, semi_proxy=False),
    "Base. +S-proxy": dict(semi_patch=False, semi_proxy=True),
    "Base. +S-patch +S-proxy": dict(),
    "Base. +S-patch +S-proxy w/o MAPR": dict(mapr=False),
    "Base. +S-patch +S-proxy w/o SSD": dict(ssd=False),
    "teacher partition": dict(partition="teacher", semi_patch=False),
}
PAPER = {"Base.": "56.0 / 64.8", "Base. +S-patch": "59.6 / 66.6", "Base. +S-proxy": "60.1 / 66.4",
         "Base. +S-patch +S-proxy": "62.2 / 70.0", "Base. +S-patch +S-proxy w/o MAPR": "60.8 / 68.0",
         "Base. +S-patch +S-proxy w/o SSD": "61.8 / 68.9", "teacher partition": "-"}


def attention_row(run_dir: Path, images: int = 256) -> dict:
    """The run's final model measured by reidlab.models.sap.attention_in_part on the first ``images`` query
    images, with the teacher parsing it trained on (the same noise): the share of the patch heads' and
    proxies' attention inside the teacher's part, against a uniform attention's share."""
    import torch
    from reidlab.data.annotations import load_teacher
    from reidlab.data.augment import normalise
    from reidlab.data.datasets import dataset_from_config
    from reidlab.data.images import load_images
    from reidlab.models.sap import attention_in_part
    from reidlab.runs.checkpoint import load_checkpoint
    from reidlab.runs.config import build_config
    from reidlab.runs.loop import teacher_noise
    from reidlab.runs.run import resolve_device
    from reidlab.use.trained import build_trained
    ckpt = load_checkpoint(run_dir, "last.pt")
    cfg = build_config(None, [], base=ckpt["config"])
    device = resolve_device(cfg.device)
    model = build_trained(cfg, ckpt, device)
    ds = dataset_from_config(cfg)
    samples = ds.query[:images]
    x = normalise(load_images([q.path for q in samples], cfg.data.height, cfg.data.width, cfg.data.workers,
                              resize=cfg.data.resize)).to(device)
    parsing = load_teacher(ds, samples, cfg.data.height, cfg.data.width, ("parsing",), teacher_noise(cfg),
                           cfg.data.workers)["parsing"].to(device)
    with torch.no_grad():
        return {f"attn_{k}": v for k, v in attention_in_part(model, x, parsing).items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    synthetic_arguments(p)
    p.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    a = p.parse_args(argv)
    setup_logging()
    out = output_folder(a.output, "sap_ablation_")
    rows = []
    for variant in a.variants:
        for seed in a.seeds:
            a.seed = seed
            tag = "sap-" + "".join(c if c.isalnum() else "-" for c in variant).strip("-") + f"-seed{seed}"
            sets = common_sets(a, "synthetic-occluded", tag, out) + [
                "teacher.noisy=true", f"model.pretrained={a.pretrained}", f"model.args.size={a.size}",
                f"model.args.depth={a.depth}", "model.args.parts=7", f"train.warmup_epochs={max(1, a.epochs // 12)}"]
            sets += [f"model.args.{k}={v}" for k, v in VARIANTS[variant].items()]
            cfg, records, minutes = train_run("sap_occluded_duke", sets, True)
            rows.append(result_row("sap_ablation", "supervised", variant, "synthetic-occluded", cfg, records, minutes,
                                   seed, PAPER[variant]))
            if VARIANTS[variant].get("partition") != "teacher":
                rows[-1].update(attention_row(Path(out) / tag))
            drop_checkpoints(Path(out) / tag, a.keep_checkpoints)
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows, [("variant", "variant"), ("seed", "seed"), ("mAP", "mAP"), ("rank-1", "rank1"),
                       ("train img/s", "train_images_per_s"), ("in-part attention: uniform", "attn_uniform"),
                       ("MSA", "attn_msa"), ("DA (eq. 3)", "attn_da"), ("proxies: uniform", "attn_proxy_uniform"),
                       ("proxies' DA (eq. 6)", "attn_proxy_da"), ("paper, Occluded-Duke (mAP / rank-1)", "paper")])
    save_rows(out, "sap_ablation", rows)

if __name__ == "__main__":
    main()
