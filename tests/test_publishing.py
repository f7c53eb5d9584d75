"""Publishing the book: the GitHub Pages workflow, and the setup cell that installs the library on Colab.

* ``.github/workflows/book.yml`` is valid against GitHub's workflow schema (check-jsonschema's vendored copy,
  so no network is needed: the test runs with every proxy pointed at a closed port), and it is the jupyter-book
  recipe: build with ``-W`` from requirements.txt, upload ``_build/html``, deploy it with the two permissions
  GitHub Pages needs.
* ``tools/setup_cell.py`` writes a first cell that installs only ``packnet[colab]`` (no jupyter-book, no
  Sphinx), pinned to the release tag of ``packnet.__version__``, in lines of at most 88 characters; applied to
  a copy of a chapter notebook in a temporary folder (the book's own notebooks are left alone), it rewrites
  that cell and nothing else; and IPython really substitutes the repository into the ``%pip`` line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
CONFIG = ROOT / "_config.yml"
PYPROJECT = ROOT / "pyproject.toml"
BOOK_ONLY = ("jupyter-book", "sphinx", "sphinxcontrib-bibtex", "sphinx-mathjax-offline")


def setup_cell_tool():
    spec = importlib.util.spec_from_file_location("book_setup_cell", ROOT / "tools" / "setup_cell.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- the workflow
def _offline_env() -> dict[str, str]:
    """The environment with every proxy variable pointing at a closed local port: any network use fails."""
    closed = "http://127.0.0.1:9"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy",)}
    env.update({name: closed for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                                          "all_proxy")})
    return env


def check_workflow_schema(path: Path) -> subprocess.CompletedProcess:
    """Run ``check-jsonschema --builtin-schema vendor.github-workflows path``, offline."""
    if importlib.util.find_spec("check_jsonschema") is None:
        reason = "check-jsonschema is not installed (pip install -r requirements.txt)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}: CI must validate the workflow")
        pytest.skip(reason)
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_offline_env())


def test_the_workflow_matches_githubs_schema():
    proc = check_workflow_schema(WORKFLOW)
    assert proc.returncode == 0, f"{WORKFLOW.relative_to(ROOT)} is not a valid workflow:\n{proc.stdout}{proc.stderr}"


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    """The validation is not vacuous: a job without ``runs-on`` and a misspelt permission are refused."""
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    workflow["on"] = workflow.pop(True)  # PyYAML reads the key `on` as the boolean True
    del workflow["jobs"]["build"]["runs-on"]
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(workflow), encoding="utf-8")
    assert check_workflow_schema(broken).returncode != 0
    text = WORKFLOW.read_text(encoding="utf-8").replace("pages: write", "pages: writ")
    broken.write_text(text, encoding="utf-8")
    assert check_workflow_schema(broken).returncode != 0


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def _uses(job: dict, action: str) -> list[dict]:
    return [s for s in _steps(job) if str(s.get("uses", "")).split("@")[0] == action]


def test_the_workflow_builds_the_book_and_deploys_it_to_pages():
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow[True]  # `on`
    assert "main" in triggers["push"]["branches"]
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]

    assert _uses(build, "actions/checkout") and _uses(build, "actions/setup-python")
    runs = "\n".join(str(s.get("run", "")) for s in _steps(build))
    assert "pip install -r requirements.txt" in runs
    build_lines = [line for line in runs.splitlines() if line.strip().startswith("jupyter-book build")]
    assert build_lines and all(shlex.split(line)[2] == "." and "-W" in line for line in build_lines), (
        f"the workflow must build the book at the root with -W (as tests/test_book.py does): {build_lines}")
    upload = _uses(build, "actions/upload-pages-artifact")
    assert upload and upload[0]["with"]["path"].rstrip("/") == "_build/html"

    assert "build" in ([deploy["needs"]] if isinstance(deploy["needs"], str) else deploy["needs"])
    assert _uses(deploy, "actions/deploy-pages")
    permissions = {**workflow.get("permissions", {}), **deploy.get("permissions", {})}
    assert permissions.get("pages") == "write" and permissions.get("id-token") == "write"
    assert deploy["environment"]["name"] == "github-pages"
    assert "pull_request" not in str(deploy.get("if", "")) or "!=" in str(deploy["if"]), (
        "a pull request must not deploy")


# --------------------------------------------------------------------------- the Colab setup cell
def test_the_colab_extra_is_the_data_extra_plus_plotting_and_widgets():
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    colab = extras[setup_cell_tool().EXTRA]
    names = {req.split(">")[0].split("=")[0].split("<")[0].strip().lower() for req in colab}
    data = {req.split(">")[0].strip().lower() for req in extras["data"]}
    assert data <= names, f"the colab extra lacks part of the data extra: {data - names}"
    assert {"matplotlib", "ipywidgets"} <= names
    assert not names & set(BOOK_ONLY), f"the colab extra installs the book's build tools: {names & set(BOOK_ONLY)}"


def test_the_release_tag_is_the_library_version():
    import packnet

    tool = setup_cell_tool()
    assert tool.release_tag() == f"v{packnet.__version__}"
    assert tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"] == packnet.__version__, (
        "pyproject.toml's version and packnet.__version__ disagree: the setup cell's tag would not be the release")


def test_the_setup_cell_installs_a_pinned_release_of_only_what_chapters_need():
    tool = setup_cell_tool()
    url = tool.configured_repository_url(CONFIG)
    cell = tool.render_setup_cell(url)
    lines = cell.splitlines()
    assert lines[0].startswith(tool.SETUP_MARKER)
    assert max(map(len, lines)) <= 88, [line for line in lines if len(line) > 88]
    pip = [line.strip() for line in lines if line.strip().startswith("%pip install")]
    assert len(pip) == 1
    assert f'"packnet[colab] @ git+{{repository}}@{tool.release_tag()}"' in pip[0]
    assert f'repository = "{url}"' in cell
    for name in BOOK_ONLY + ("[book]",):
        assert name not in cell
    assert "@main" not in cell and "@" + "HEAD" not in cell


def test_a_long_repository_url_is_split_to_fit_the_line():
    tool = setup_cell_tool()
    url = "https://git.example.org/" + "/".join(["a-rather-long-group-name"] * 5) + "/packnet-book"
    cell = tool.render_setup_cell(url, ref="v9.9.9")
    assert max(map(len, cell.splitlines())) <= 88
    lines = cell.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    repository = "))
    end = next(i for i, line in enumerate(lines) if "%pip" in line)
    assert end - start > 1, "the URL was not split"
    namespace: dict = {}
    exec(textwrap.dedent("\n".join(lines[start:end])), namespace)  # noqa: S102 - the cell's assignment
    assert namespace["repository"] == url


def test_the_setup_cell_refuses_unsafe_values():
    tool = setup_cell_tool()
    for url in ('https://x"; rm -rf /', "https://x/{y}", "", "https://x y"):
        with pytest.raises(ValueError):
            tool.render_setup_cell(url, ref="v1")
    for ref in ("v1; rm", "../x", "-x", ""):
        with pytest.raises(ValueError):
            tool.render_setup_cell("https://example.org/o/r", ref=ref)


def test_the_script_rewrites_a_copy_of_a_notebook_and_nothing_else(tmp_path):
    tool = setup_cell_tool()
    source = ROOT / "book" / "03_pruning.ipynb"
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    before = json.loads(copy.read_text(encoding="utf-8"))
    canonical = tool.render_setup_cell(tool.configured_repository_url(CONFIG), tool.release_tag())

    status = tool.sync_notebook(copy, canonical, write=True)
    assert status in ("updated", "ok")
    after = json.loads(copy.read_text(encoding="utf-8"))
    code = [i for i, c in enumerate(after["cells"]) if c["cell_type"] == "code"]
    first = "".join(after["cells"][code[0]]["source"])
    assert first == canonical
    assert max(len(line) for line in first.splitlines()) <= 88
    assert len(after["cells"]) == len(before["cells"])
    for i, (old, new) in enumerate(zip(before["cells"], after["cells"])):
        if i != code[0]:
            assert "".join(old["source"]) == "".join(new["source"]), f"cell {i} changed"
            assert old.get("outputs") == new.get("outputs"), f"cell {i}'s outputs changed"
    assert tool.sync_notebook(copy, canonical, write=False) == "ok"
    assert tool.main([str(copy), "--check"]) == 0  # the command line agrees, and changes nothing


def test_ipython_substitutes_the_repository_into_the_pip_line(tmp_path):
    """Run the cell as Colab would, in a fresh IPython shell where ``import packnet`` fails at first: the shell
    command ``%pip`` runs must name the configured repository at the release tag (it is recorded, not run)."""
    pytest.importorskip("IPython")
    tool = setup_cell_tool()
    url = tool.configured_repository_url(CONFIG)
    cell = tool.render_setup_cell(url)
    script = tmp_path / "colab.py"
    script.write_text(
        "import json, sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "commands = []\n"
        "def system(cmd):\n"
        "    commands.append(cmd)\n"
        "    del sys.modules['packnet']  # 'installed': the second import works\n"
        "shell.system = system\n"
        "sys.modules['packnet'] = None  # not installed yet: `import packnet` raises ImportError\n"
        f"result = shell.run_cell({cell!r})\n"
        "result.raise_error()\n"
        "print(json.dumps(commands))\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    commands = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(commands) == 1, commands
    words = shlex.split(commands[0])
    assert words[1:5] == ["-m", "pip", "install", "--quiet"], words
    assert words[5] == f"packnet[colab] @ git+{url}@{tool.release_tag()}"
