"""requirements.lock, what `make setup` installs (README, "Installing"): every dependency pyproject.toml names
(the package's, and its dev, onnx and tensorboard extras) is pinned to one version inside its range, with the
hashes of its files; and the ranges hold no upper bound that the lock would hide."""
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tests.locked import PIN, locked

ROOT = Path(__file__).resolve().parents[1]


def test_the_lock_pins_every_dependency_inside_its_range_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    for extra in ("dev", "onnx", "tensorboard"):
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    lock = locked(str(ROOT / "requirements.lock"))
    for req in wanted:
        name = req.name.lower()
        assert name in lock, f"{name} is not in requirements.lock: run make lock"
        assert req.specifier.contains(lock[name], prereleases=True), f"{name}=={lock[name]} is outside {req}"
    text = (ROOT / "requirements.lock").read_text()
    pins = [e for e in re.split(r"\n(?=[A-Za-z0-9])", text) if PIN.match(e)]     # each pin with its lines
    assert len(pins) == len(lock) and all("--hash=sha256:" in e for e in pins)
    assert "file://" not in text and "--find-links" not in text           # nothing of one machine's disk
