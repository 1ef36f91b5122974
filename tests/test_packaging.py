"""What a user or a distro packager gets: the sdist, its metadata, the README, the imports."""

from __future__ import annotations

import ast
import email.parser
import importlib
import re
import shutil
import subprocess
import sys
import tarfile
from email.message import Message
from pathlib import Path

import pytest

import agentstream

ROOT = Path(__file__).resolve().parent.parent

# Run from the unpacked sdist: collects the whole suite (a missing helper module
# is a collection error there), runs this selection, which uses conftest.py, the
# child scripts and the server fixtures, and not this module (no recursion).
SDIST_SUBSET = (
    "test_errors or run_forever_exits_zero or drop_mid_event_resumes or headers_frame_format"
)


# What a clean checkout does not have.
NOT_SOURCE = (
    ".git",
    ".venv*",
    "*.egg-info",
    "build",
    "dist",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
)


def python(code: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd
    )


# -- imports --------------------------------------------------------------------------


def imported_after(statement: str) -> set[str]:
    result = python(f"import sys; {statement}; print('\\n'.join(sys.modules))")
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_the_wire_layer_imports_no_pydantic() -> None:
    loaded = imported_after("import agentstream.sse")
    assert "pydantic" not in loaded
    assert "agentstream.models" not in loaded


def test_importing_the_package_imports_none_of_its_submodules() -> None:
    loaded = imported_after("import agentstream")
    assert {name for name in loaded if name.startswith("agentstream")} == {"agentstream"}
    assert not {"pydantic", "requests", "blinker", "sseclient"} & loaded


def test_a_name_imports_only_what_it_needs() -> None:
    loaded = imported_after("from agentstream import RetryPolicy, EventType")
    assert "pydantic" not in loaded
    assert "agentstream.client" not in loaded


def _type_checking_imports() -> dict[str, str]:
    """What the TYPE_CHECKING block of agentstream/__init__.py imports: name -> module."""
    tree = ast.parse((ROOT / "agentstream" / "__init__.py").read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    ]
    names: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name}: write `import X as X`"
            names[alias.name] = node.module or alias.name
    return names


def test_the_lazy_exports_the_type_checkers_view_and_all_agree() -> None:
    exports = agentstream._EXPORTS
    assert _type_checking_imports() == exports, "add the name to _EXPORTS and TYPE_CHECKING"
    assert sorted(agentstream.__all__) == sorted([*exports, "__version__"])
    assert set(agentstream.__all__) <= set(dir(agentstream))


def test_every_export_is_its_submodules_object() -> None:
    for name, module_name in agentstream._EXPORTS.items():
        module = importlib.import_module(f"agentstream.{module_name}")
        expected = module if name == module_name else getattr(module, name)
        assert getattr(agentstream, name) is expected, name
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = agentstream.Nope  # type: ignore[attr-defined]


def test_the_per_type_event_classes_are_exported() -> None:
    from agentstream import models

    event_classes = {
        name
        for name in models.__all__
        if isinstance(getattr(models, name), type)
        and issubclass(getattr(models, name), models.TaskEvent)
        and name != "TaskEvent"
    }
    assert len(event_classes) == len(set(agentstream.EventType))  # one per wire type
    assert event_classes <= set(agentstream.__all__)


def test_star_import_gives_every_public_name() -> None:
    result = python(
        "from agentstream import *\n"
        "import agentstream\n"
        "missing = [n for n in agentstream.__all__ if n not in globals()]\n"
        "print(missing)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- metadata -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist built from a clean copy of this tree (no build isolation: offline), unpacked.

    A copy, because setuptools also ships what an ``*.egg-info/SOURCES.txt``
    left by an earlier build lists, which would hide a gap in MANIFEST.in.
    """
    source = tmp_path_factory.mktemp("source") / "agentstream"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), "."],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (archive,) = out.glob("agentstream-*.tar.gz")
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.9.17; 3.12+ warns without it
            tar.extractall(out, filter="data")
        else:  # pragma: no cover - older patch releases
            tar.extractall(out)
    (unpacked,) = (path for path in out.iterdir() if path.is_dir())
    return unpacked


@pytest.fixture(scope="module")
def metadata(sdist: Path) -> Message:
    return email.parser.Parser().parsestr((sdist / "PKG-INFO").read_text())


def test_the_licence_is_mit_as_an_spdx_expression_with_its_file(metadata: Message) -> None:
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    assert not [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]


def test_build_requirements_are_setuptools_only() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    requires = re.search(r"\[build-system\]\s*(?:#.*\n)*requires = \[([^\]]*)\]", text)
    assert requires is not None
    assert [r.strip().strip('"') for r in requires.group(1).split(",")] == ["setuptools>=77"]


def test_python_versions_and_project_urls(metadata: Message) -> None:
    classifiers = metadata.get_all("Classifier") or []
    for minor in range(9, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert metadata["Requires-Python"] == ">=3.9"
    urls = _project_urls(metadata)
    assert {"Homepage", "Documentation", "Source", "Changelog", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


def _floors(metadata: Message, extras: frozenset[str] = frozenset()) -> dict[str, str]:
    """The lowest version each requirement allows: the core's, or those of ``extras``."""
    floors = {}
    for requirement in metadata.get_all("Requires-Dist") or []:
        match = re.fullmatch(
            r"([a-z-]+)(?:\[.*\])?\s*\(?[^;]*?>=([\d.]+)[^;]*(?:; (.*))?", requirement
        )
        if match is None:
            continue
        extra = re.search(r'extra == "([a-z]+)"', match.group(3) or "")
        if (extra.group(1) in extras) if extra else not extras:
            floors[match.group(1)] = match.group(2)
    return floors


def _compat_pins() -> dict[str, str]:
    """What `make test-compat` installs: the Makefile's OLDEST pins."""
    oldest = re.search(r"^OLDEST := (.*?)(?<!\\)$", (ROOT / "Makefile").read_text(), re.M | re.S)
    assert oldest is not None
    return dict(re.findall(r"'([a-z-]+)==([\d.]+)'", oldest.group(1)))


def test_the_oldest_allowed_dependencies_are_not_yanked_and_are_what_compat_tests(
    metadata: Message,
) -> None:
    floors = _floors(metadata)
    assert set(floors) == {"requests", "sseclient-py", "pydantic", "blinker"}
    # 2.32.0 and 2.32.1 were yanked (conflict with the CVE-2024-35195 mitigation)
    assert tuple(int(part) for part in floors["requests"].split(".")) >= (2, 32, 2)
    pins = _compat_pins()
    # `make test-compat` tests the lowest release of each floor's series
    assert all(pins[name].startswith(floor) for name, floor in floors.items()), (pins, floors)


def test_compat_tests_each_extras_floor_too(metadata: Message) -> None:
    floors = _floors(metadata, frozenset({"server", "webhooks", "redis", "flask", "django"}))
    assert set(floors) == {"werkzeug", "standardwebhooks", "httptools", "redis", "flask", "django"}
    pins = _compat_pins()
    assert all(pins[name].startswith(floor) for name, floor in floors.items()), (pins, floors)


def _project_urls(metadata: Message) -> dict[str, str]:
    return dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])


def _heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (lower case, spaces to hyphens)."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


def repository_link_problems(repository: str, url: str, root: Path = ROOT) -> list[str]:
    """Why ``url``, an address under ``repository``, does not name a file of it (or [])."""
    if url == repository or url == repository + "/issues":
        return []
    for kind, exists in (("/blob/main/", Path.is_file), ("/tree/main/", Path.is_dir)):
        if url.startswith(repository + kind):
            path, _, anchor = url[len(repository + kind) :].partition("#")
            if not exists(root / path):
                return [f"{url}: no {path} in the repository"]
            if anchor and anchor not in _heading_anchors((root / path).read_text()):
                return [f"{url}: no heading #{anchor} in {path}"]
            return []
    return [f"{url}: not a file, folder or the issues of {repository}"]


def address_problems(metadata_urls: dict[str, str], readme: str, root: Path = ROOT) -> list[str]:
    """Every project URL and README link to the repository agrees with Source and resolves."""
    repository = metadata_urls["Source"]
    problems = []
    for name, url in metadata_urls.items():
        problems += [f"{name}: {p}" for p in repository_link_problems(repository, url, root)]
    for link in re.findall(r"\]\(([^)]+)\)", readme):
        if not link.startswith("https://"):
            problems.append(f"{link}: relative links break on the index page")
        elif link.startswith("https://github.com/") and not link.startswith(repository + "/"):
            problems.append(f"{link}: not under Source, {repository}")
        elif link.startswith(repository + "/"):
            problems += repository_link_problems(repository, link, root)
    return problems


def test_readme_links_work_on_the_package_index(metadata: Message) -> None:
    # The index page shows the README alone: each link is absolute, under the one
    # repository address (pyproject's Source; tools/repository_url.py changes it),
    # and names a file (and heading) or folder that exists in this checkout.
    readme = (ROOT / "README.md").read_text()
    assert len(re.findall(r"\]\(([^)]+)\)", readme)) >= 15
    assert address_problems(_project_urls(metadata), readme) == []


def test_a_link_to_a_missing_file_or_heading_or_another_repository_is_caught() -> None:
    base = "https://github.com/owner/name"
    urls = {"Source": base, "Changelog": base + "/blob/main/CHANGES.md"}
    readme = (
        f"[a]({base}/blob/main/docs/nowhere.md) [b]({base}/blob/main/docs/handlers.md#nothing)"
        f" [c](https://github.com/someone/else/blob/main/README.md) [d](docs/client.md)"
        f" [e]({base}/blob/main/docs/handlers.md#what-is-guaranteed) [f]({base}/tree/main/docs)"
    )
    assert address_problems(urls, readme) == [
        f"Changelog: {base}/blob/main/CHANGES.md: no CHANGES.md in the repository",
        f"{base}/blob/main/docs/nowhere.md: no docs/nowhere.md in the repository",
        f"{base}/blob/main/docs/handlers.md#nothing: no heading #nothing in docs/handlers.md",
        f"https://github.com/someone/else/blob/main/README.md: not under Source, {base}",
        "docs/client.md: relative links break on the index page",
    ]


def test_the_repository_address_changes_in_one_command(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "repository_url.py", tmp_path / "tools")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    old = re.search(r'^Source = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert old is not None
    tool = [sys.executable, str(tmp_path / "tools" / "repository_url.py")]
    new = "https://example.org/published/agentstream"
    done = subprocess.run([*tool, new], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout == f"{old.group(1)} -> {new}: pyproject.toml, README.md\n"
    shown = subprocess.run(tool, capture_output=True, text=True, timeout=30, check=True)
    assert shown.stdout == new + "\n"
    pyproject = (tmp_path / "pyproject.toml").read_text()
    readme = (tmp_path / "README.md").read_text()
    assert old.group(1) not in pyproject + readme
    urls = dict(re.findall(r'^(\w+) = "(https://[^"]+)"$', pyproject, re.M))
    assert set(urls) == {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    assert urls["Source"] == new
    # the links still name files that exist (the checkout's: the copy has only two)
    assert address_problems(urls, readme) == []


def test_the_readmes_first_screen_keeps_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    assert readme.index("make demo") < 1500


def test_make_says_what_it_installs_before_installing(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text())
    (tmp_path / "pyproject.toml").write_text("")
    result = subprocess.run(
        ["make", "-n", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    said = next(i for i, line in enumerate(lines) if "installing agentstream" in line)
    installs = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert said < installs


# -- the sdist ------------------------------------------------------------------------


def test_the_sdist_holds_the_tests_docs_examples_and_build_files(sdist: Path) -> None:
    wanted = [
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "CONTRIBUTING.md",
        "Makefile",
        "setup.cfg",
        "pyproject.toml",
        "agentstream/py.typed",
        *(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("*.py")),
        *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
        *(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.py")),
        *(str(p.relative_to(ROOT)) for p in (ROOT / "bench").glob("*.py")),
    ]
    for helper in ["__init__.py", "conftest.py", "child_output.py", "listener_child.py"]:
        assert f"tests/{helper}" in wanted
    missing = [name for name in wanted if not (sdist / name).is_file()]
    assert missing == []
    assert not list(sdist.rglob("__pycache__"))


def test_the_tests_pass_from_the_unpacked_sdist(sdist: Path) -> None:
    """What a distro packager runs: the suite collects with no error, a subset passes."""
    where = python("import agentstream; print(agentstream.__file__)", cwd=sdist)
    assert where.stdout.strip() == str(sdist / "agentstream" / "__init__.py")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", SDIST_SUBSET],
        cwd=sdist,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed, \d+ deselected", summary), summary
    assert "error" not in summary
