import reidlab  # noqa: F401  (first: OpenMP's wait policy, before torch loads; reidlab/__init__.py)
import pytest

from reidlab.data.synthetic import ensure_synthetic


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


def run_in_process(*args) -> tuple[int, str, str]:
    """``python main.py ARGS`` in this process, without a fixture: (exit code, stdout, stderr), argparse's exits
    (--help, a bad flag) included. The tests of messages and exit codes use it instead of a fresh process,
    which costs a torch import each (about 3 s); benchmarks/bad_inputs.py runs the same kinds of mistakes in
    fresh processes."""
    import contextlib
    import io

    import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main.main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return code, out.getvalue(), err.getvalue()

