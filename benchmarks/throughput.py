"""Images per second of the training step and of feature extraction for each registered model at 256 x 128,
with its FLOPs per image (forward, counted by torch.utils.flop_counter) and the fraction of the device's
peak that the training step reaches (3 x the forward FLOPs per image: forward and the two backward
products). FLOPs count a multiply-add as 2.

    python -m benchmarks.throughput                             # CPU, small batches
    python -m benchmarks.throughput --device cuda --batch 256   # bf16 autocast on a GPU; H100 peak known
    python -m benchmarks.throughput --batch 16 --bn-images 4    # also the step with BatchNorm over slices of 4
    python -m benchmarks.throughput --deterministic             # also the step in train.deterministic's mode

Models at their recipes' sizes (ResNet-50 and its IBN-a form, DAAF on ResNet-50 with its training branches,
ViT-B/16 with stride 16 (AAformer's ViT-baseline), AAformer on ViT-B/16, SAP on ViT-B/16 with 4 px overlap,
Pirt on ResNet-50-IBN-a), all at 256 x 128; random weights, random images (and teacher targets for DAAF), the
project's optimiser step, mixed precision as ``train.amp`` does it. The peak is ``--peak-tflops``, or
for a GPU whose name contains H100 / H200 the dense bf16 tensor-core peak of 989 TFLOPS; on a CPU no
peak is given unless you give one. ``--bn-images N`` times the training step a second time, in the same
run, with every BatchNorm over slices of N images (``train.bn_images``, models.sliced_bn), and gives the
ratio of the two step times. ``--deterministic`` does the same with the deterministic kernels of
``train.deterministic`` (runs.determinism.set_deterministic) switched on for the second timing.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from reidlab.models import MODELS, build_model
from reidlab.runs.loop import amp_dtype
from reidlab.runs.run import resolve_device

ARGS = {"resnet18": {}, "resnet50": {}, "resnet50_ibn_a": {}, "daaf": dict(base="resnet50"),
        "vit": dict(size="base", stride=16), "aaformer": dict(size="base", stride=16),
        "sap": dict(size="base", overlap=4), "pirt": dict(backbone="resnet50_ibn_a")}
PEAKS = {"H100": 989.0, "H200": 989.0}       # dense bf16 TFLOPS


def forward_flops(model, x, targets) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, **targets)
    return counter.get_total_flops() / x.shape[0]


def timed(fn, steps: int, device) -> float:
    fn()                                              # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def measure(name: str, device, batch: int, steps: int, height: int, width: int, peak: float | None,
            bn_images: int = 0, deterministic: bool = False, compile: bool = False, args: dict | None = None,
            amp: str = "auto", channels_last: bool | None = None) -> dict:
    """One model's row. ``compile``: the training step's forward through ``torch.compile`` (as
    ``train.compile``; the warm-up step compiles); ``args``: the model's size arguments instead of ARGS';
    ``amp``: as ``train.amp``; ``channels_last``: for convolutional models (default: on a GPU)."""
    torch.manual_seed(0)
    model = build_model(name, pretrained="none", num_classes=751, input_size=(height, width),
                        **(ARGS.get(name, {}) if args is None else args)).to(device)
    channels_last = (device.type == "cuda" if channels_last is None else channels_last) \
        and getattr(model, "convolutional", False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    x = torch.randn(batch, 3, height, width, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(batch, device=device) % 751
    targets = {k: v for k, v in {"mask": (torch.rand(batch, 1, height, width, device=device) > 0.5).float(),
                                 "keypoints": torch.rand(batch, 17, 3, device=device) * torch.tensor(
                                     [width - 1.0, height - 1.0, 2.0], device=device),
                                 "parsing": torch.randint(0, 7, (batch, 1, height, width), device=device)}.items()
               if k in getattr(model, "teacher_targets", ())}
    at_test = {k: v for k, v in targets.items() if k in getattr(model, "test_teacher_targets", ())}
    dtype = amp_dtype(device, amp)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def train_step():
        model.train()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = forward(x, **targets)
            logits = [t.logits for t in out.loss_terms or [] if t.logits is not None] or [out.logits, *out.part_logits]
            loss = out.features.float().pow(2).mean() + sum(out.aux_losses.values())
            loss = loss + sum(torch.nn.functional.cross_entropy(z.float(), y) for z in logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def extract_step():
        model.eval()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(x, **at_test)

    model.eval()
    flops = forward_flops(model, x[:2], {k: v[:2] for k, v in at_test.items()})
    train_s, extract_s = timed(train_step, steps, device), timed(extract_step, steps, device)
    train_ips = batch / train_s
    row = {"benchmark": "throughput", "model": name, "device": str(device), "precision": str(dtype or "fp32"),
           "batch": batch, "input": f"{height}x{width}", "channels_last": channels_last, "compiled": compile,
           "train_images_per_s": round(train_ips, 1),
           "extract_images_per_s": round(batch / extract_s, 1), "forward_GFLOPs_per_image": round(flops / 1e9, 2),
           "train_TFLOPS": round(3 * flops * train_ips / 1e12, 3)}
    if peak:
        row["fraction_of_peak"] = round(3 * flops * train_ips / 1e12 / peak, 3)
    if bn_images:
        from reidlab.models.sliced_bn import slice_batchnorms
        slice_batchnorms(model, bn_images)
        sliced_s = timed(train_step, steps, device)
        row.update(bn_images=bn_images, train_images_per_s_sliced=round(batch / sliced_s, 1),
                   sliced_step_time_ratio=round(sliced_s / train_s, 3))
    if deterministic:
        from reidlab.runs.determinism import set_deterministic
        set_deterministic(True)
        try:
            det_s = timed(train_step, steps, device)
        finally:
            set_deterministic(False)
        row.update(train_images_per_s_deterministic=round(batch / det_s, 1),
                   deterministic_step_time_ratio=round(det_s / train_s, 3))
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=None, help="default 8 on a CPU, 256 on a GPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 2 on a CPU, 20 on a GPU)")
    p.add_argument("--models", nargs="+", default=MODELS.names())
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--bn-images", type=int, default=0, help="also time the step with BatchNorm over slices of N")
    p.add_argument("--deterministic", action="store_true", help="also time the step with deterministic kernels")
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    gpu = device.type == "cuda"
    peak = a.peak_tflops
    if peak is None and gpu:
        peak = next((v for k, v in PEAKS.items() if k in torch.cuda.get_device_name(device)), None)
    for name in a.models:
        print(json.dumps(measure(name, device, a.batch or (256 if gpu else 8), a.steps or (20 if gpu else 2),
                                 a.height, a.width, peak, a.bn_images, a.deterministic)), flush=True)


if __name__ == "__main__":
    main()
