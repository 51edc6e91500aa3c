"""The environment against the lock (``make test``'s first lines): each package of requirements.lock, its locked
version and the one installed; a report, not a failure (exit 0), so that a machine set up by hand (torch's CPU
build, README "Installing by hand") still runs the suite and says how it differs.

    python tests/locked.py requirements.lock            # differences, then "N of N packages as locked"
    python tests/locked.py requirements.lock --newest   # make test-latest: every package newer than the lock
"""
import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)==([^\s\\;]+)")


def locked(path: str) -> dict[str, str]:
    """name -> version of each ``name==version`` line of a pip-compile lock."""
    return {m.group(1).lower(): m.group(2) for line in Path(path).read_text().splitlines() if (m := PIN.match(line))}


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str]) -> int:
    lock = locked(argv[0])
    rows = [(name, want, installed(name)) for name, want in sorted(lock.items())]
    same = [r for r in rows if r[2] is not None and r[2].split("+")[0] == r[1]]
    differ = [r for r in rows if r not in same]
    if "--newest" in argv:
        print(f"the newest versions the ranges allow, against {argv[0]}:")
    for name, want, got in differ:
        print(f"  {name}: locked {want}, installed {got or 'none'}")
    print(f"{len(same)} of {len(rows)} packages as locked in {argv[0]}"
          + ("" if not differ else f"; {len(differ)} differ (listed above)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
