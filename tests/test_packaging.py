"""An installed wheel carries what `binwatch demo` reads besides code: the broker configuration,
the migrations and the default fleet (package data, found through importlib.resources, never
through the checkout). Built from a copy of the tree, so the build leaves nothing in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 300  # pip fetches setuptools into its build environment from the index

# Run by the venv's interpreter with only the unpacked wheel on PYTHONPATH before the project.
CHECK = """
import sys
from importlib import resources
from pathlib import Path

import binwatch
from binwatch.database import MIGRATIONS
from binwatch.servers import broker_conf_dir
from devices.fleet import default_fleet_path

site = Path(sys.argv[1]).resolve()
assert Path(binwatch.__file__).resolve().is_relative_to(site), binwatch.__file__
conf = broker_conf_dir()
assert conf.resolve().is_relative_to(site), conf
assert (conf / "binwatch.conf").read_text().startswith("#")
package, _, folder = MIGRATIONS.partition(":")
assert (resources.files(package) / folder / "env.py").is_file()
assert len(list((resources.files(package) / folder / "versions").iterdir())) >= 5
assert Path(default_fleet_path()).resolve().is_relative_to(site)
from api.console import STATIC_DIR
from api.console.i18n import LOCALES, catalog_path
assert STATIC_DIR.resolve().is_relative_to(site), STATIC_DIR
assert (STATIC_DIR / "htmx.min.js").is_file() and (STATIC_DIR / "console.css").is_file()
assert (STATIC_DIR.parent / "templates" / "base.html").is_file()
assert all(catalog_path(locale).is_file() for locale in LOCALES)
print("ok")
"""


def test_the_wheel_carries_the_demo_configuration(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".*_cache", "tests"
        ),
    )
    dist, site = tmp_path / "dist", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(source), "--no-deps", "-w", str(dist)],
        check=True,
        timeout=BUILD_TIMEOUT_S,
    )
    [wheel] = dist.glob("binwatch-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        timeout=BUILD_TIMEOUT_S,
    )
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(site)],
        cwd=tmp_path,  # not the checkout: nothing may be found through it
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
