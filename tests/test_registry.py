"""One registry class for models, attention blocks and datasets: unknown names name the closest one."""
import pytest

from reidlab.data import DATASETS
from reidlab.errors import ConfigError, DatasetError
from reidlab.models import MODELS
from reidlab.models.attention import ATTENTION_BLOCKS, resolve_block
from reidlab.registry import Registry


@pytest.mark.parametrize("registry,typo,right,error", [
    (MODELS, "resnet5", "resnet50", ConfigError),
    (DATASETS, "market1502", "market1501", DatasetError),
])
def test_unknown_name_names_the_closest(registry, typo, right, error):
    assert isinstance(registry, Registry)
    with pytest.raises(error, match=f"did you mean '{right}'"):
        registry.get(typo)


def test_attention_blocks_share_the_registry():
    assert isinstance(ATTENTION_BLOCKS, Registry)
    with pytest.raises(ConfigError, match="did you mean 'pla'.*import path"):
        resolve_block("plaa")


def test_registering_a_name_twice_is_refused():
    r = Registry("thing")
    r.register("a")(int)
    with pytest.raises(ValueError, match="twice"):
        r.register("a")(float)
    assert r.names() == ["a"] and "a" in r and r.get("a") is int
