"""A kernel we do not own: oneDNN's bf16 convolutions on the CPU, at the shapes where upstream bugs live.

torch 2.12.1 to 2.14.1 bundle oneDNN 3.11 / 3.12, whose AMX bf16 convolution (Xeon with ``amx_bf16`` in
/proc/cpuinfo) reads uninitialised memory for a 3 x 3 stride-2 convolution whose output is one pixel wide:
the forward gets garbage, sometimes NaN, and differs between runs (pytorch/pytorch#169688; its open fix
#188426 covers conv3d only). A second oneDNN bf16 bug fills the weight gradient of a stride-2 convolution
on a one-pixel-wide input with garbage (pytorch/pytorch#163347). ``DNNL_MAX_CPU_ISA=AVX512_CORE_BF16``
(AMX off, set before torch starts) avoids the first.

This test looks for both at the shapes a ResNet meets at a 32 x 16 input (layer3.0.conv1; a 1-wide input
to a stride-2 3 x 3 and 1 x 1 convolution), against fp32 on the same bf16-rounded numbers, three times.
Where a bug is present it is reported as an expected failure naming the issue (the suite does not fail for
it); where it is absent the test passes. The project's own bf16 tests run at 64 x 32, which meets neither
(docs/scale.md, "CPUs with AMX"); a training run that meets it is stopped by the non-finite guard."""
import pytest
import torch
import torch.nn.functional as F

CASES = [  # (what, input H x W, in, out, kernel) of a stride-2 convolution
    ("3x3 stride-2, output 1 wide (layer3.0.conv1 at 32 x 16)", (4, 2), 128, 256, 3),
    ("3x3 stride-2 on a 1-wide input", (2, 1), 256, 512, 3),
    ("1x1 stride-2 on a 1-wide input (a downsample)", (2, 1), 256, 512, 1),
]


def amx() -> bool:
    try:
        return "amx_bf16" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def worst_errors(hw, cin, cout, k) -> tuple[float, float, bool]:
    """(forward, weight-gradient) largest error relative to the fp32 result's largest value, over three runs,
    and whether the three runs agree bit for bit."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, cin, *hw, generator=g).bfloat16()
    w = (torch.randn(cout, cin, k, k, generator=g) * 0.05).bfloat16()
    xf, wf = x.float(), w.float().requires_grad_()
    ref = F.conv2d(xf, wf, stride=2, padding=k // 2)
    grad_out = torch.randn(ref.shape, generator=g).bfloat16()
    ref.backward(grad_out.float())
    ref = ref.detach()
    runs = []
    for _ in range(3):
        wb = w.clone().requires_grad_()
        y = F.conv2d(x, wb, stride=2, padding=k // 2)
        y.backward(grad_out)
        runs.append((y.detach().float(), wb.grad.float()))
    fwd = max(float((y - ref).abs().max() / ref.abs().max()) for y, _ in runs)
    bwd = max(float((gw - wf.grad).abs().max() / wf.grad.abs().max()) for _, gw in runs)
    same = all(torch.equal(a, b) for r in runs[1:] for a, b in zip(r, runs[0]))
    return fwd, bwd, same


def test_onednn_bf16_convolutions_at_the_buggy_shapes():
    found = []
    for what, hw, cin, cout, k in CASES:
        fwd, bwd, same = worst_errors(hw, cin, cout, k)
        if not (fwd < 0.05 and bwd < 0.05 and same):          # bf16 rounds to 0.4%; garbage is far off
            found.append(f"{what}: forward error {fwd:.3g}, weight-gradient error {bwd:.3g}, runs agree: {same}")
    if found:
        pytest.xfail(f"oneDNN bf16 bug present (torch {torch.__version__}, AMX: {amx()}; pytorch/pytorch#169688, "
                     f"#163347; DNNL_MAX_CPU_ISA=AVX512_CORE_BF16 avoids the AMX one): " + "; ".join(found))


def test_the_detector_sees_a_kernel_that_returns_garbage(monkeypatch):
    """What the check above would report on an AMX CPU, shown here with a convolution that adds noise in
    bf16 (as an uninitialised read would): the errors are far above bf16's rounding, and the runs differ."""
    real = F.conv2d

    def garbage(x, w, *args, **kwargs):
        y = real(x, w, *args, **kwargs)
        return y + torch.randn_like(y) * 10 if y.dtype == torch.bfloat16 else y
    monkeypatch.setattr(F, "conv2d", garbage)
    fwd, bwd, same = worst_errors(*CASES[0][1:])
    assert fwd > 0.05 and not same
