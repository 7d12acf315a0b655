"""What a wheel carries: every file the package reads at run time is inside `cascade/` and
declared in pyproject's package-data, so a non-editable install has it as a checkout does.

Why: a data file found through `__file__` outside the package, or inside it but not declared,
works from the checkout every developer uses and is missing from every installed copy (the
protocol files once lay at the repository root).  Checked with setuptools' own rule (each
package's globs, relative to its folder, `*` not crossing a `/`) instead of building a wheel:
fast, and it names the file that would be left out.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> tuple[set[str], dict[str, list[str]]]:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(tool["packages"]), tool.get("package-data", {})


def test_every_data_file_of_the_package_is_declared_package_data():
    packages, data = _declared()
    shipped = {f for package, globs in data.items() for pattern in globs
               for f in (ROOT / package.replace(".", "/")).glob(pattern)}
    files = [f for f in (ROOT / "cascade").rglob("*")
             if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts]
    assert files
    missing = [str(f.relative_to(ROOT)) for f in files if f not in shipped]
    assert not missing, f"files under cascade/ a wheel would leave out (add them to pyproject's package-data): {missing}"
    undeclared = [p for p in data if p not in packages]
    assert not undeclared, f"package-data for packages pyproject does not list: {undeclared}"


def test_every_package_folder_is_listed():
    packages, _ = _declared()
    folders = {".".join(d.relative_to(ROOT).parts) for d in (ROOT / "cascade").rglob("*")
               if d.is_dir() and "__pycache__" not in d.parts and any(d.glob("*.py"))}
    assert folders | {"cascade"} <= packages, f"packages pyproject does not list: {sorted(folders - packages)}"


def test_the_shipped_protocols_are_found_as_package_resources(monkeypatch):
    from importlib import resources

    from cascade.protocols import SHIPPED, protocol_names

    monkeypatch.delenv("CASCADE_PROTOCOLS", raising=False)
    found = {p.name for p in resources.files("cascade.configs").joinpath("protocols").iterdir()}
    assert {"lopo.yaml", "adience.yaml"} <= found
    assert set(protocol_names()) == {name.removesuffix(".yaml") for name in found}
    assert SHIPPED.resolve().is_relative_to((ROOT / "cascade").resolve())
