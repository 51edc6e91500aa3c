"""benchmarks/parity_step.py without Cluster Contrast's code: its names onto our ResNet, and a user's wrong folders."""
import pytest
import torch

from benchmarks import parity_step
from reidlab.models.resnet import ReIDResNet


def test_its_resnet_names_load_into_ours_exactly():
    ours = ReIDResNet("resnet18", pretrained="none", input_size=(64, 32))
    theirs = {}                      # its ResNet's names: base.* as ours, gap.p of shape 1, feat_bn.*
    for k, v in ours.state_dict().items():
        if k == "pool.p":
            theirs["gap.p"] = v.reshape(1) + 1
        elif k.startswith("neck.bn."):
            theirs["feat_bn." + k[len("neck.bn."):]] = v
        else:
            theirs[k] = v
    ours.load_state_dict(parity_step.to_ours(theirs), strict=True)
    assert float(ours.pool.p) == 4.0
    with pytest.raises(KeyError, match="classifier.weight"):
        parity_step.to_ours({**theirs, "classifier.weight": torch.zeros(2, 512)})


def test_a_folder_that_is_not_its_code_is_exit_2(tmp_path, capsys):
    assert parity_step.main(["--code", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "cluster_contrast_train_usl.py" in capsys.readouterr().err
    assert parity_step.main(["--code", str(tmp_path), "--data", str(tmp_path), "--steps", "0"]) == 2
