"""The project installs (pyproject.toml): ``pip install -e .`` into a new virtual environment (reusing this one's
installed packages, so nothing large is downloaded), then the API, a recipe and the ``reid`` command work from a
folder outside the repository that holds modules named as users often name theirs (data, models, errors, utils,
runs, memory): none of them shadows the project's, which all live under the one package ``reidlab`` (the
distribution's name too: PyPI's ``reid`` is another project, whose import name is ``reid``)."""
import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHADOWS = ("data", "models", "errors", "utils", "runs", "memory", "evaluation", "registry", "use")


def test_pip_install_e_then_import_from_anywhere(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")   # torch, pip, ... of this venv
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    got = subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", *isolation, "-e", str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stdout + got.stderr
    elsewhere = tmp_path / "my_project"
    elsewhere.mkdir()
    for name in SHADOWS:
        (elsewhere / f"{name}.py").write_text(f"WHO = 'the user {name}'\n")
    script = (
        "import data, models, errors, utils, runs, memory\n"
        "assert data.WHO == 'the user data' and runs.WHO == 'the user runs'\n"
        "import reidlab\n"
        "from reidlab import TrainedModel, Features\n"
        "from reidlab.runs.config import build_config\n"
        f"assert reidlab.__file__.startswith({str(ROOT / 'reidlab')!r}), reidlab.__file__\n"
        "cfg = build_config('demo')\n"
        "assert cfg.name == 'demo' and cfg.model.name == 'resnet18'\n"
        "assert models.WHO == 'the user models' and TrainedModel.__module__ == 'reidlab.use.api'\n"
        "print('ok', reidlab.__version__)\n")
    run = subprocess.run([py, "-c", script], cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.startswith("ok "), run.stdout + run.stderr
    cli = subprocess.run([venv / "bin" / "reid", "--config", "demo", "--print-config"], cwd=elsewhere,
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and "name: demo" in cli.stdout, cli.stderr
