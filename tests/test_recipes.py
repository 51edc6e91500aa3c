"""Each recipe holds the values its paper (or the code the paper follows) states; the header cites them."""
import pytest

from reidlab.runs.config import RECIPES, build_config


def test_every_recipe_header_cites_its_source():
    for p in RECIPES.glob("*.yaml"):
        head = [line for line in p.read_text().splitlines() if line.startswith("#")]
        assert len(head) >= 3, f"{p.name}: the header comment should cite the paper / table / code it reproduces"


def test_cluster_contrast_as_published():
    cfg = build_config("cluster_contrast_resnet50")
    t, m = cfg.train, cfg.memory
    assert (cfg.data.height, cfg.data.width, cfg.model.pooling, cfg.model.last_stride) == (256, 128, "gem", 1)
    assert (t.num_ids, t.num_instances, t.iters, t.epochs) == (16, 16, 200, 50)
    assert (t.optimizer, t.lr, t.weight_decay, t.step_size, t.gamma) == ("adam", 3.5e-4, 5e-4, 20, 0.1)
    assert (m.temp, m.momentum, m.update, m.init) == (0.05, 0.1, "mean", "mean")
    assert (cfg.cluster.k1, cfg.cluster.k2, cfg.cluster.eps, cfg.cluster.min_samples) == (30, 6, 0.4, 4)
    # its code's input rules (benchmarks/tables/parity.yaml)
    assert (cfg.data.resize, cfg.aug.erasing_box, t.pass_end, t.replace_below) == ("bicubic", "redraw", "drop", "k")
    for derived in ("demo", "aaformer_unsup_market1501", "mla_market1501"):
        d = build_config(derived)
        assert (d.data.resize, d.aug.erasing_box, d.train.pass_end, d.train.replace_below) == \
            ("bicubic", "redraw", "drop", "k"), derived


def test_mla_is_spcl_with_the_papers_section_4_1():
    cfg = build_config("mla_market1501")
    t, m = cfg.train, cfg.memory
    # MLA section 4.1
    assert (t.num_ids, t.num_instances, t.epochs, t.lr, t.step_size, t.gamma) == (8, 8, 50, 1.6e-4, 20, 0.1)
    assert (cfg.cluster.eps, cfg.cluster.min_samples, cfg.data.height, cfg.data.width) == (0.4, 4, 256, 128)
    assert (m.update, m.init) == ("hard", "random")                      # section 3: random init, batch_hard
    assert (cfg.model.attention, cfg.model.name, cfg.model.pretrained) == ("mla", "resnet50", "imagenet")
    # "the rest as [Ge et al., 2020b]": SpCL's 400 iterations, average pooling, momentum 0.2
    assert (t.iters, cfg.model.pooling, m.momentum, m.temp) == (400, "avg", 0.2, 0.05)
    assert (cfg.cluster.k1, cfg.cluster.k2, t.weight_decay) == (30, 6, 5e-4)


def test_bag_of_tricks_full_recipe():
    cfg = build_config("bot_market1501")
    t, loss = cfg.train, cfg.loss
    assert (cfg.model.pooling, cfg.model.last_stride, cfg.model.head) == ("avg", 1, "bnneck")
    assert (loss.label_smoothing, loss.margin, loss.center, loss.center_lr) == (0.1, 0.3, 0.0005, 0.5)
    assert (t.num_ids, t.num_instances, t.sampler) == (16, 4, "identity")
    assert (t.lr, t.weight_decay, t.steps, t.gamma, t.epochs) == (3.5e-4, 5e-4, [40, 70], 0.1, 120)
    assert (t.warmup_epochs, t.lr * t.warmup_factor) == (10, pytest.approx(3.5e-5))
    assert (cfg.aug.erasing, cfg.aug.pad, cfg.aug.flip) == (0.5, 10, 0.5)


def test_daaf_recipes():
    bot = build_config("daaf_bot_market1501")
    assert bot.model.name == "daaf" and bot.model.args["lambda_h"] == bot.model.args["lambda_p"] == 0.003
    assert bot.model.args["loss_form"] == "paper" and bot.loss.center == 0.0005       # on the full BoT
    tri = build_config("daaf_trinet_market1501")
    assert (tri.model.head, tri.model.last_stride, tri.loss.id, tri.loss.margin, tri.loss.center) == \
        ("trinet", 2, 0.0, 0.0, 0.0)
    assert (tri.train.num_ids, tri.train.num_instances, tri.train.lr, tri.train.sampler) == (18, 4, 1e-3, "pk")


def test_recipes_state_their_papers_devices():
    """train.bn_images = the per-device batch of the paper or code each recipe follows (its header says so)."""
    expected = {"cluster_contrast_resnet50": 64, "aaformer_unsup_market1501": 64, "mla_market1501": 32,
                "cluster_contrast_cajaccard_market1501": 64, "cluster_contrast_cajaccard_msmt17": 64,
                "demo_cajaccard": 16,
                "pirt_occluded_duke": 32, "demo": 16, "bot_market1501": 0, "daaf_bot_market1501": 0,
                "daaf_trinet_market1501": 0, "aaformer_market1501": 0, "sap_occluded_duke": 0, "sap_market1501": 0,
                "vit_base_market1501": 0, "pretrain_resnet18": 0, "pretrain_vit_tiny": 0,
                "pretrain_fractal_resnet18": 0, "pretrain_fractal_vit_tiny": 0, "demo_3c": 16,
                "cluster_contrast_3c_market1501": 128, "cluster_contrast_3c_msmt17": 128}
    assert set(expected) == {p.stem for p in RECIPES.glob("*.yaml")}
    for name, images in expected.items():
        assert build_config(name).train.bn_images == images, name
        assert "# Devices:" in (RECIPES / f"{name}.yaml").read_text(), name


def test_the_ca_jaccard_recipes_are_its_readmes_commands():
    """CA-Jaccard's README: market1501 -eps 0.4 --iters 200, msmt17 --eps 0.6 --iters 400, both --ckrnns --clqe
    --k2-intra 2 --k2-inter 4; train_caj.py's defaults k1_intra 5, k1_inter 20, avg pooling, batch 256 = 16 x 16."""
    m, s = build_config("cluster_contrast_cajaccard_market1501"), build_config("cluster_contrast_cajaccard_msmt17")
    for cfg, dataset, eps, iters in ((m, "market1501", 0.4, 200), (s, "msmt17", 0.6, 400)):
        c = cfg.cluster
        assert (cfg.data.dataset, c.eps, cfg.train.iters) == (dataset, eps, iters)
        assert (c.distance, c.ckrnns, c.clqe, c.clqe_warmup) == ("ca-jaccard", True, True, True)
        assert (c.k1_intra, c.k1_inter, c.k2_intra, c.k2_inter, c.min_samples) == (5, 20, 2, 4, 4)
        assert (cfg.model.pooling, cfg.train.num_ids, cfg.train.num_instances, cfg.train.epochs) == ("avg", 16, 16, 50)


def test_the_demo_is_deterministic_at_the_readmes_thread_count():
    demo = build_config("demo")
    assert demo.train.deterministic and demo.train.threads == 2
    assert not build_config("cluster_contrast_resnet50").train.deterministic      # the fast default elsewhere


def test_the_vit_baseline_is_aaformers_with_a_plain_vit():
    """vit_base_market1501 is the ViT-baseline of AAformer's tables: every value of aaformer_market1501 but the
    model's own (section IV-A and IV-B), non-overlapping 16 x 16 patches, BoT's loss settings."""
    vit, aa = build_config("vit_base_market1501").to_dict(), build_config("aaformer_market1501").to_dict()
    vm, am = vit.pop("model"), aa.pop("model")
    vit["loss"].pop("parts"), aa["loss"].pop("parts")            # the [PART] weight: a ViT has no parts
    assert vit == aa
    assert vm["name"] == "vit" and {k: vm["args"][k] for k in ("size", "stride", "depth", "drop_path")} == \
        {k: am["args"][k] for k in ("size", "stride", "depth", "drop_path")} == \
        {"size": "base", "stride": 16, "depth": 12, "drop_path": 0.1}
    assert (vit["loss"]["label_smoothing"], vit["loss"]["margin"], vit["train"]["warmup_epochs"],
            vit["train"]["warmup_factor"]) == (0.1, 0.3, 10, 0.1)
