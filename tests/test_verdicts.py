"""The paired verdicts of benchmarks/verdicts.py on written-out numbers, and the pairing itself: two rows of one
seed share their initial weights, their batches and their flips and crops (docs/results.md, "Paired seeds")."""
import json
import math

import numpy as np
from scipy import stats
import pytest
import torch

from benchmarks.verdicts import next_seed, paired
from reidlab.data.augment import batch_streams, train_augment
from reidlab.runs.config import build_config, parse_override


def test_a_gain_whose_interval_clears_zero():
    # differences 3, 2, 3 points: mean 8/3, sd sqrt(1/3), t(0.975, 2) = 4.302653 -> half-width 1.434218
    p = paired({1: 0.70, 2: 0.72, 3: 0.71}, {1: 0.73, 2: 0.74, 3: 0.74})
    assert p.seeds == (1, 2, 3) and p.differences == pytest.approx((3, 2, 3))
    assert p.mean == pytest.approx(8 / 3)
    half = 4.302653 * math.sqrt(1 / 3) / math.sqrt(3)
    assert (p.low, p.high) == pytest.approx((8 / 3 - half, 8 / 3 + half), abs=1e-5)
    assert p.verdict == "gain" and p.words() == "+2.7 [+1.2, +4.1]"


def test_a_loss_and_an_undecided_one():
    loss = paired({1: 0.80, 2: 0.81, 3: 0.79, 4: 0.80}, {1: 0.78, 2: 0.78, 3: 0.78, 4: 0.77})
    # differences -2, -3, -1, -3: mean -2.25, sd 0.957427, t(0.975, 3) = 3.182446
    assert loss.mean == pytest.approx(-2.25)
    assert loss.high == pytest.approx(-2.25 + 3.182446 * 0.957427 / 2, abs=1e-5) and loss.verdict == "loss"
    mixed = paired({1: 0.70, 2: 0.70}, {1: 0.72, 2: 0.69})          # +2, -1
    assert mixed.mean == pytest.approx(0.5) and mixed.low < 0 < mixed.high and mixed.verdict == "undecided"


def test_seeds_count_only_where_both_rows_have_them_and_one_seed_decides_nothing():
    p = paired({1: 0.5, 2: 0.6, 5: 0.1}, {2: 0.9, 3: 0.4})
    assert p.seeds == (2,) and p.mean == pytest.approx(30) and p.low is None and p.verdict == "undecided"
    assert "one seed" in p.words()
    assert paired({}, {1: 0.3}).words() == "-" and paired({}, {}).n == 0
    assert next_seed(paired({1: 0.1, 2: 0.2}, {1: 0.2, 2: 0.1}), {1, 2, 7}) == 8


def test_equal_differences_give_a_zero_width_interval():
    p = paired({1: 0.5, 2: 0.6}, {1: 0.52, 2: 0.62})
    assert p.low == pytest.approx(2) == p.high and p.verdict == "gain"


def test_flips_and_crops_do_not_depend_on_the_erasing():
    """Random erasing on or off (a ladder's step) leaves every other draw of every batch as it was."""
    x = torch.randint(0, 256, (32, 3, 16, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for i in range(3):                                             # the first batch and later ones alike
        on = train_augment(x, batch_streams(1, 2, i, "cpu"), 0.5, 2, 0.5, "redraw")
        off = train_augment(x, batch_streams(1, 2, i, "cpu"), 0.5, 2, 0.0, "redraw")
        same = (on == off).all(1).flatten(1).all(1)
        assert same.sum() >= 4 and (~same).sum() >= 4             # some images erased, the rest identical
        changed = (on != off).any(1)                               # where they differ: one box per image
        for b in torch.nonzero(~same).flatten():
            ys, xs = torch.nonzero(changed[b], as_tuple=True)
            assert changed[b, ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()
    a, b = batch_streams(1, 2, 0, "cpu"), batch_streams(1, 2, 1, "cpu")
    assert not torch.equal(torch.rand(5, generator=a.flip), torch.rand(5, generator=b.flip))
    assert torch.equal(torch.rand(5, generator=batch_streams(3, 1, 0, "cpu").crop),
                       torch.rand(5, generator=batch_streams(3, 1, 0, "cpu").crop))


def ladder_config(tiny_root, tmp_path, *sets):
    base = [f"data.root={tiny_root}", "data.synthetic_size=tiny", "data.dataset=synthetic", "model.name=resnet18",
            "model.pretrained=none", "data.height=64", "data.width=32", "device=cpu", f"output={tmp_path}"]
    return build_config("bot_market1501", [parse_override(s) for s in base + list(sets)])


def test_paired_rows_share_initial_weights_and_batches(tmp_path, tiny_root, monkeypatch):
    """Bag of Tricks' two ends (bot_ladder.yaml) at one seed: the same backbone weights before training (last stride
    and the head change no shape of it) and the same batches, epoch by epoch; another seed changes both."""
    from reidlab.supervised import trainer
    baseline = ("train.warmup_epochs=0", "aug.erasing=0", "loss.label_smoothing=0", "model.last_stride=2",
                "model.head=none", "loss.center=0")
    seen = {}

    def fake_fit(s, prepare_epoch, title, resume, extra):     # the plans the loop would train on
        seen[s.cfg.seed, s.cfg.model.head] = ({k: v.clone() for k, v in s.model.base.state_dict().items()},
                                              [list(prepare_epoch(e).batches) for e in (1, 2)])
        return []
    monkeypatch.setattr(trainer, "fit", fake_fit)
    for seed in (1, 2):
        for sets in (baseline, ()):
            cfg = ladder_config(tiny_root, tmp_path, f"seed={seed}", *sets)
            trainer.run_supervised(cfg, tmp_path)
    (w_base, b_base), (w_bot, b_bot) = seen[1, "none"], seen[1, "bnneck"]
    assert all(torch.equal(w_base[k], w_bot[k]) for k in w_base)
    assert b_base == b_bot and b_base[0] != b_base[1]
    w_other, b_other = seen[2, "bnneck"]
    assert not all(torch.equal(w_bot[k], w_other[k]) for k in w_bot) and b_other != b_bot
    assert np.mean([len(b) for b in b_bot[0]]) == 64             # the recipe's 16 x 4 batches


def test_welchs_interval_for_two_codes_without_shared_seeds():
    from benchmarks.verdicts import welch
    # a: 70, 72, 74 (var 4); b: 75, 76, 77, 78 (var 5/3); se = sqrt(4/3 + 5/12) = sqrt(7/4)
    w = welch([0.70, 0.72, 0.74], [0.75, 0.76, 0.77, 0.78])
    df = (7 / 4) ** 2 / ((4 / 3) ** 2 / 2 + (5 / 12) ** 2 / 3)
    half = stats.t.ppf(0.975, df) * math.sqrt(7 / 4)
    assert w.mean == pytest.approx(4.5) and (w.low, w.high) == pytest.approx((4.5 - half, 4.5 + half))
    assert w.verdict == "gain" and welch([0.5], [0.6, 0.7]).verdict == "undecided"


def test_parity_logs_are_read_beside_the_seeds_already_kept(tmp_path, monkeypatch):
    """benchmarks.parity_code --from-logs: a finished log's figures (clusters, evaluated epochs, the best model's
    mAP and rank-1, minutes) join the seeds the file holds; an unfinished log is left out, a kept seed stays."""
    from benchmarks import parity_code
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_text(json.dumps({"seed": 1, "mAP": 0.734, "by_epoch": {"2": {"mAP": 0.4}}}) + "\n")
    monkeypatch.setattr(parity_code, "THEIRS", theirs)
    log = ("Args:Namespace(seed=3, epochs=2)\n==> Statistics for epoch 0: 185 clusters\n"
           " * Finished epoch   1  model mAP: 45.0%  best: 45.0% *\n==> Statistics for epoch 1: 190 clusters\n"
           "==> Test with the best model:\nMean AP: 45.0%\nCMC Scores:\n  top-1          60.5%\n"
           "Total running time:  0:13:30.5\n")
    for seed, text in ((3, log), (4, log.replace("seed=3", "seed=4").split("==> Test")[0]), (5, "not a log\n")):
        (tmp_path / "logs" / f"s{seed}").mkdir(parents=True)
        (tmp_path / "logs" / f"s{seed}" / "log.txt").write_text(text)
    got = parity_code.from_logs(tmp_path / "logs")
    assert [x["seed"] for x in got] == [3]
    lines = [json.loads(x) for x in theirs.read_text().splitlines()]
    assert [x["seed"] for x in lines] == [1, 3] and lines[0]["mAP"] == 0.734
    three = lines[1]
    assert (three["mAP"], three["epoch"], three["clusters"], three["best_rank1"], three["minutes"]) == \
        (0.45, 2, 190, 0.605, 13.5)
