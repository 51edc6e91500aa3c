import re

import pytest

from reidlab.errors import ConfigError
from reidlab.runs.config import all_keys, build_config, parse_override, read_recipe


def test_recipe_inheritance_and_overrides():
    cfg = build_config("demo.yaml", [parse_override("train.lr=1e-4"), parse_override("cluster.eps=0.5")])
    assert cfg.model.name == "resnet18" and cfg.model.pretrained == "none"        # from demo.yaml
    assert cfg.memory.temp == 0.05 and cfg.cluster.k1 == 30                      # from its base
    assert cfg.train.lr == pytest.approx(1e-4) and cfg.cluster.eps == 0.5


def test_published_cluster_contrast_settings():
    cfg = build_config("cluster_contrast_resnet50")
    t = cfg.train
    assert (cfg.data.height, cfg.data.width) == (256, 128)
    assert (t.num_ids * t.num_instances, t.iters, t.epochs, t.lr, t.weight_decay, t.step_size, t.gamma) == \
        (256, 200, 50, 3.5e-4, 5e-4, 20, 0.1)
    assert (cfg.memory.temp, cfg.memory.momentum) == (0.05, 0.1)
    assert (cfg.cluster.k1, cfg.cluster.k2, cfg.cluster.eps, cfg.cluster.min_samples) == (30, 6, 0.4, 4)


@pytest.mark.parametrize("override,needle", [
    ("train.lrr=1", "train.lr"), ("trian.lr=1", "train"), ("cluster.epss=0.3", "cluster.eps")])
def test_unknown_key_names_the_closest(override, needle):
    with pytest.raises(ConfigError, match=needle):
        build_config(None, [parse_override(override)])


def test_types_are_checked():
    with pytest.raises(ConfigError, match="integer"):
        build_config(None, [parse_override("train.epochs=2.5")])
    with pytest.raises(ConfigError, match="true or false"):
        build_config(None, [parse_override("test.flip=maybe")])
    assert build_config(None, [parse_override("train.epochs=3")]).train.epochs == 3


def test_all_recipes_parse():
    from reidlab.runs.config import RECIPES
    for p in RECIPES.glob("*.yaml"):
        read_recipe(p)
        build_config(p)
    assert "cluster.eps" in all_keys()


def test_mla_recipe_has_the_papers_settings():
    cfg = build_config("mla_market1501")
    t = cfg.train
    assert cfg.model.attention == "mla" and cfg.model.name == "resnet50" and cfg.model.pretrained == "imagenet"
    assert (t.num_ids, t.num_instances, t.lr, t.step_size, t.gamma, t.epochs) == (8, 8, 1.6e-4, 20, 0.1, 50)
    assert (cfg.cluster.eps, cfg.cluster.min_samples, cfg.data.height, cfg.data.width) == (0.4, 4, 256, 128)
    assert (cfg.memory.update, cfg.memory.init) == ("hard", "random")


def test_dict_keys_merge():
    cfg = build_config(None, [parse_override("model.attention_args.reduction=8"),
                              parse_override("model.attention_args.heads=2")])
    assert cfg.model.attention_args == {"reduction": 8, "heads": 2}


def test_model_args_reach_the_constructor_and_unknown_ones_are_named():
    from reidlab.models import model_from_config
    cfg = build_config(None, [parse_override("model.name=daaf"), parse_override("model.pretrained=none"),
                              parse_override("model.args.base=resnet18"), parse_override("model.args.pab=false"),
                              parse_override("data.height=64"), parse_override("data.width=32")])
    m = model_from_config(cfg)
    assert m.pab is None and m.hab is not None and m.teacher_targets == ("mask",)
    cfg.model.args["hab_weight"] = 1.0
    with pytest.raises(ConfigError, match="'daaf' takes no argument 'hab_weight'.*lambda_h"):
        model_from_config(cfg)
    plain = build_config(None, [parse_override("model.name=resnet18"), parse_override("model.args.hab=true")])
    with pytest.raises(ConfigError, match="'resnet18' takes no argument 'hab'"):
        model_from_config(plain)


def test_the_old_daaf_key_names_the_new_one():
    with pytest.raises(ConfigError, match="model.args.hab"):
        build_config(None, [parse_override("model.daaf.hab=false")])
    # a checkpoint's config saved before the move still loads, as model.args
    old = {"model": {"name": "daaf", "daaf": {"base": "resnet18", "hab": False}}}
    assert build_config(base=old).model.args == {"base": "resnet18", "hab": False}


def test_default_data_root_is_not_the_source_package(monkeypatch):
    monkeypatch.delenv("REID_DATA", raising=False)
    assert build_config(None).data_root == "datasets"
    monkeypatch.setenv("REID_DATA", "/somewhere")
    assert build_config(None).data_root == "/somewhere"


@pytest.mark.parametrize("override,words", [
    ("train.lr=nan", "finite"), ("memory.temp=inf", "finite"), ("train.steps=[4, .nan]", "finite"),
    ("cluster.eps=1", "< 1"), ("seed=4294967296", "<= 4294967295"), ("device=mps", "not a device"),
])
def test_values_the_code_below_would_reject_stop_at_build_time(override, words):
    """NaN and inf pass a range check (they compare false); eps 1 reaches DBSCAN, a seed of 2**32 numpy."""
    with pytest.raises(ConfigError, match=re.escape(words)):
        build_config("demo", [parse_override(override)])


@pytest.mark.parametrize("files,words", [
    ({"a": "_base_: b.yaml\n", "b": "_base_: a.yaml\n"}, "comes back to it (a.yaml -> b.yaml -> a.yaml)"),
    ({"a": "_base_: a.yaml\n"}, "cannot base on itself"),
    ({"a": "_base_: [demo.yaml]\n"}, "_base_ is one recipe's name or path"),
    ({"a": "_base_: 3\n"}, "_base_ is one recipe's name or path"),
    ({"a": b"_base_: demo.yaml\nname: caf\xe9\n"}, "not UTF-8 text"),
    ({"a": "_base_: demo.yaml\ntrain: {lr: 0.001}\ntrain: {epochs: 2}\n"}, "the key 'train' is given twice"),
])
def test_recipe_files_that_cannot_be_read_as_meant(tmp_path, files, words):
    for name, text in files.items():
        target = tmp_path / f"{name}.yaml"
        target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(words)):
        build_config(str(tmp_path / "a.yaml"))
