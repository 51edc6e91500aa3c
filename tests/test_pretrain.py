"""The pretraining stage (issue: ablations from a pretrained start): a synthetic population whose persons the
evaluation sets never hold, and recipes whose last.pt is a weight file that model.pretrained=PATH loads into
every model of the ablations, baseline and paper model alike."""
import pytest
import torch

import main
from reidlab.data.synthetic.generate import PRETRAIN_SEED, SIZES, shared_identities
from reidlab.models import build_model


def test_the_pretraining_population_shares_no_person_with_the_evaluation_sets():
    assert SIZES["pretrain"].train_ids >= 2000 and SIZES["pretrain"].train_images >= 30000
    for evaluation in (("tiny", 0), ("small", 0), ("market", 0)):
        assert shared_identities(("pretrain", PRETRAIN_SEED), evaluation) == 0, evaluation
    assert shared_identities(("small", 0), ("small", 0)) == 400               # the check finds what is shared


def pretrain(out, tiny_root, recipe):
    args = ["--config", recipe, "--set", "data.synthetic_size=tiny", "--set", "data.height=32", "--set",
            "data.width=16", "--set", "train.iters=2", "--set", "train.epochs=1", "--set", "test.batch_size=64",
            "--device", "cpu", "--data-root", str(tiny_root), "--output", str(out)]
    assert main.main(args) == 0
    ckpt = out / recipe / "last.pt"
    assert ckpt.is_file()
    return ckpt, torch.load(ckpt, weights_only=True)["model"]


@pytest.fixture(scope="module")
def pretrained_vit(tiny_root, tmp_path_factory):
    return pretrain(tmp_path_factory.mktemp("pretrain"), tiny_root, "pretrain_vit_tiny")


def test_pretrained_resnet18_loads_into_the_cnn_students(tmp_path, tiny_root):
    ckpt, state = pretrain(tmp_path, tiny_root, "pretrain_resnet18")
    for name, args in (("resnet18", {}), ("daaf", {"base": "resnet18"}), ("resnet18", {"attention": "mla"}),
                       ("pirt", {"backbone": "resnet18"})):
        m = build_model(name, pretrained=str(ckpt), input_size=(64, 32), **args)
        base = m.base.base if name in ("daaf", "pirt") else m.base
        assert torch.equal(base[0].weight, state["base.0.weight"]), name          # the stem
        assert torch.equal(base[4][0].conv1.weight, state["base.4.0.conv1.weight"]), name


@pytest.mark.parametrize("student", ["vit", "aaformer", "sap"])
def test_pretrained_vit_tiny_loads_into_every_transformer_student(pretrained_vit, student):
    ckpt, state = pretrained_vit
    args = {"sap": dict(overlap=0, depth=4, parts=3)}.get(student, dict(stride=16, depth=4))
    # a supervised student: its identity classifier has another number of classes than the pretraining's, and
    # the file's re-ID heads (BNNeck, classifier) are left out, as a ResNet student loads its backbone only
    m = build_model(student, size="tiny", pretrained=str(ckpt), input_size=(64, 32), num_classes=7, **args)
    assert m.classifier.weight.shape[0] == 7 and state["classifier.weight"].shape[0] != 7
    assert not torch.equal(m.neck.bn.running_mean, state["neck.bn.running_mean"])
    for key in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.3.mlp.fc2.weight", "cls_token"):
        mine = dict(m.named_parameters())[key]
        assert torch.equal(mine, state[key]), (student, key)
    assert m.pos_embed.shape[1] == 1 + 4 * 2 and state["pos_embed"].shape[1] == 1 + 2 * 1     # resized grid


def test_weights_of_another_model_stop_the_run_before_its_folder(pretrained_vit, tiny_root, tmp_path):
    """A ViT's file given to a ResNet (or a ResNet's to a ViT) loads nothing: an error naming what the file
    holds, exit 2 when the config is checked, and no run folder."""
    from reidlab.errors import CheckpointError
    from tests.conftest import run_in_process
    ckpt, _ = pretrained_vit
    with pytest.raises(CheckpointError, match="none of its .* tensors is a ResNet's"):
        build_model("resnet18", pretrained=str(ckpt), input_size=(64, 32))
    resnet_file = tmp_path / "resnet18.pt"
    torch.save({"model": {f"base.{k}": v for k, v in build_model("resnet18", pretrained="none").base.state_dict()
                          .items()}}, resnet_file)
    with pytest.raises(CheckpointError, match="none of its .* tensors fits this model"):
        build_model("vit", size="tiny", depth=2, stride=16, pretrained=str(resnet_file), input_size=(64, 32))
    torch.save({}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        build_model("resnet18", pretrained=str(tmp_path / "empty.pt"))
    code, _, err = run_in_process("--mode", "supervised", "--config", "bot_market1501", "--dataset", "synthetic",
                                  "--data-root", tiny_root, "--set", "data.synthetic_size=tiny", "--set",
                                  "model.name=resnet18", "--set", f"model.pretrained={ckpt}", "--output",
                                  tmp_path / "runs")
    assert code == 2 and "is a ResNet's" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
