import reid  # noqa: F401  (first: OpenMP's wait policy, before torch loads; reid/__init__.py)
import pytest

from reid.data.synthetic import ensure_synthetic


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A data root with the tiny synthetic benchmark, plain and occluded (generated once per session)."""
    root = tmp_path_factory.mktemp("data")
    ensure_synthetic(root, "tiny", occluded=False)
    ensure_synthetic(root, "tiny", occluded=True)
    return root


@pytest.fixture
def main_in_process(capsys):
    """``python main.py ARGS`` in this process: (exit code, stdout, stderr). A mistake's message and code are
    the same as in a fresh process (main.main prints the error and returns 2; any other exception would
    fail the test with its traceback); benchmarks/bad_inputs.py runs such probes in fresh processes."""
    import main

    def call(*args):
        capsys.readouterr()
        code = main.main([str(a) for a in args])
        got = capsys.readouterr()
        return code, got.out, got.err
    return call
