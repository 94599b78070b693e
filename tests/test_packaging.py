"""What a user gets from ``pip install rsgan``: the wheel's and sdist's files, the declared
dependencies and their lower bounds, the version, and the error an optional dependency
that is missing gives."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import rsgan
from rsgan.cli.main import cli
from rsgan.errors import MissingDependencyError
from rsgan.pipelines.catalog import translate_catalog

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "rsgan"
ASSET = "rsgan/assets/default_cyclegan_joplin.safetensors"

# Import name -> the distribution (or extra) that provides it, where the two differ.
_DISTRIBUTION_OF = {"distributed": "dask"}  # `dask[distributed]`

# The oldest release of a dependency that has what rsgan uses, and what that is. A
# declared lower bound below one of these installs a release rsgan fails on.
_NEEDS = {
    "affine": ((3, 0), "Affine @ (x, y) (chip footprints in rsgan.tiling and rsgan.data)"),
    "rasterio": ((1, 4), "GDAL's errors on damaged files raised as rsgan's read errors"),
    "geopandas": ((1, 1), "a GeoDataFrame with a 'crs' column (the chip index) and no CRS"),
    "pyogrio": ((0, 10), "a GeoPackage AOI without a CRS read as one without a CRS"),
    "pystac": ((1, 12), "ProjectionExtension.code (proj:code of the STAC Items written)"),
    "shapely": ((2, 0), "vectorised shapely.intersects / shapely.within"),
}


def _project() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _requirements() -> dict[str, tuple[int, ...] | None]:
    """Declared distribution names (extras' included) -> their ``>=`` lower bound."""
    project = _project()
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs.extend(extra)
    out: dict[str, tuple[int, ...] | None] = {}
    for req in reqs:
        name = re.match(r"[A-Za-z0-9_.-]+", req)
        assert name is not None, req
        low = re.search(r">=\s*([0-9.]+)", req)
        key = name.group(0).lower().replace("_", "-")
        out[key] = tuple(int(p) for p in low.group(1).split(".")) if low else None
    return out


def _third_party_imports() -> dict[str, str]:
    """Top-level names rsgan imports (at module level or inside functions) that are
    neither the standard library nor rsgan -> a file that imports it."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "rsgan" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_package_rsgan_imports_is_a_declared_dependency() -> None:
    """A package reached only through another's dependencies (affine through rasterio,
    pandas through geopandas) can be any release, or none, when those change theirs."""
    declared = _requirements()
    missing = {
        name: where
        for name, where in _third_party_imports().items()
        if _DISTRIBUTION_OF.get(name, name).lower() not in declared
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


@pytest.mark.parametrize("name", sorted(_NEEDS))
def test_declared_lower_bounds_admit_no_release_rsgan_fails_on(name: str) -> None:
    needed, why = _NEEDS[name]
    declared = _requirements().get(name)
    assert declared is not None and declared >= needed, (
        f"{name}: declared lower bound {declared}, but rsgan needs {needed}: {why}"
    )


def test_torch_has_no_upper_bound() -> None:
    """A cap makes pip replace the newer torch a user already has (a CUDA build of
    several GB) when they install rsgan."""
    (torch_req,) = [r for r in _project()["dependencies"] if r.startswith("torch")]
    assert "<" not in torch_req and "==" not in torch_req, torch_req


def test_version_has_one_source() -> None:
    """The version pip records is ``rsgan.__version__`` (what checkpoints and
    ``rsgan --version`` report), not a second copy in pyproject.toml."""
    project = _project()
    assert "version" not in project and "version" in project["dynamic"]
    with open(REPO / "pyproject.toml", "rb") as f:
        dynamic = tomllib.load(f)["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "rsgan.__version__"}


def _copy_checkout(dest: Path) -> Path:
    """The files a build reads, plus the clutter a working checkout has."""
    for name in ("pyproject.toml", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("rsgan", "tests", "examples"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    clutter = [
        "rsgan/__pycache__/io.cpython-311.pyc",
        "tests/__pycache__/conftest.cpython-311-pytest-8.pyc",
        "rsgan/assets/default_cyclegan_joplin.safetensors.tmp",
        "rsgan/assets/stage1.safetensors",
        ".venv/bin/python",
        "runs/joplin/model.safetensors",
        "demo-output/translated.tif",
        ".hypothesis/examples/x",
    ]
    for rel in clutter:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(b"clutter")
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str], str]:
    """(wheel file names, sdist file names relative to its root, wheel METADATA)."""
    setuptools_version = importlib.metadata.version("setuptools")
    if int(setuptools_version.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools_version}; pyproject.toml needs >= 77")
    src = _copy_checkout(tmp_path_factory.mktemp("checkout"))
    out = src / "dist"
    code = (
        "import sys; from setuptools import build_meta as b; out = sys.argv[1]; "  # it sets argv
        "s = b.build_sdist(out); w = b.build_wheel(out); print('BUILT', s, w)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=src, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (built_line,) = [line for line in done.stdout.splitlines() if line.startswith("BUILT ")]
    _, sdist_name, wheel_name = built_line.split()
    with zipfile.ZipFile(out / wheel_name) as whl:
        wheel = whl.namelist()
        (meta,) = [n for n in wheel if n.endswith(".dist-info/METADATA")]
        metadata = whl.read(meta).decode()
    with tarfile.open(out / sdist_name) as tar:
        sdist = [m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name]
    return wheel, sdist, metadata


def test_wheel_holds_the_package_its_model_and_py_typed_only(
    built: tuple[list[str], list[str], str],
) -> None:
    wheel, _, _ = built
    sources = {str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")}
    assert sources <= set(wheel), sorted(sources - set(wheel))
    assert ASSET in wheel and "rsgan/py.typed" in wheel
    stray = [
        n
        for n in wheel
        if not (n.startswith("rsgan/") or n.startswith(f"rsgan-{rsgan.__version__}.dist-info/"))
        or "__pycache__" in n
        or n.endswith((".pyc", ".tmp"))
    ]
    assert not stray, stray
    assert [n for n in wheel if n.startswith("rsgan/assets/")] == [ASSET]


def test_sdist_holds_the_package_and_a_whole_test_suite_without_clutter(
    built: tuple[list[str], list[str], str],
) -> None:
    """``pytest`` from an unpacked sdist (what distribution packagers run) needs
    conftest.py and the test subfolders, not only tests/test_*.py."""
    _, sdist, _ = built
    tests = {str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("*.py")}
    assert tests <= set(sdist), sorted(tests - set(sdist))
    assert {ASSET, "rsgan/py.typed", "LICENSE", "examples/train_default_model.py"} <= set(sdist)
    stray = [
        n
        for n in sdist
        if n.split("/")[0] in {".venv", "runs", "demo-output", ".hypothesis", "dist", "build"}
        or "__pycache__" in n
        or n.endswith((".pyc", ".tmp"))
    ]
    assert not stray, stray
    assert [n for n in sdist if n.startswith("rsgan/assets/") and n != "rsgan/assets/"] == [ASSET]


def test_wheel_metadata_names_version_licence_and_dependencies(
    built: tuple[list[str], list[str], str],
) -> None:
    _, _, metadata = built
    assert f"\nVersion: {rsgan.__version__}\n" in metadata
    assert "\nLicense-Expression: MIT\n" in metadata
    assert "\nRequires-Dist: affine>=3.0\n" in metadata
    assert re.search(r"\nRequires-Dist: torch>=[0-9.]+\n", metadata)


# ------------------------------------------------------------------ optional dependencies


@pytest.fixture
def without_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import distributed`` raises ImportError, as where the extra is not installed."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "dask", None)


@pytest.mark.usefixtures("without_dask")
def test_scheduler_without_dask_names_the_pip_command(tmp_path: Path) -> None:
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'rsgan[dask]'")):
        translate_catalog(tmp_path, tmp_path / "out", scheduler="tcp://127.0.0.1:8786")
    assert issubclass(MissingDependencyError, ImportError)


@pytest.mark.usefixtures("without_dask")
def test_batch_without_dask_is_one_line_naming_the_pip_command(tmp_path: Path) -> None:
    """Quoted, so that zsh (macOS's shell) does not read ``[dask]`` as a glob."""
    result = CliRunner().invoke(
        cli, ["batch", str(tmp_path), str(tmp_path / "out"), "--scheduler", "tcp://h:8786"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: scheduler='tcp://h:8786' needs Dask distributed; install it with "
        "`pip install 'rsgan[dask]'`"
    ]
