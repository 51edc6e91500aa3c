import runs  # noqa: F401  (first: OpenMP's wait policy, before torch loads; runs/__init__.py)
import pytest

from data.synthetic import ensure_synthetic


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A data root with the tiny synthetic benchmark, plain and occluded (generated once per session)."""
    root = tmp_path_factory.mktemp("data")
    ensure_synthetic(root, "tiny", occluded=False)
    ensure_synthetic(root, "tiny", occluded=True)
    return root
