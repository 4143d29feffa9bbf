"""The documentation site: docs/*.md plus an API reference generated from the docstrings (mkdocs
with mkdocstrings; offline, nothing fetched).

  python -m experiments.build_docs --out=/tmp/gatedrnn_site      # then open /tmp/gatedrnn_site/index.html

`build_site` copies docs/ to a scratch directory, writes one API page per module of `API_MODULES`
(`::: gatedrnn.scan`) and an mkdocs.yml there (the repository keeps no generated files), and runs
`mkdocs build --strict`, so a broken link between pages or a module that fails to import fails the
build.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

# The modules whose docstrings make the API reference, in reading order.
API_MODULES = (
    "gatedrnn.cells", "gatedrnn.cells.base", "gatedrnn.scan", "gatedrnn.scan.options", "gatedrnn.scan.parallel",
    "gatedrnn.nn.layers", "gatedrnn.nn.blocks", "gatedrnn.nn.attention", "gatedrnn.nn.heads", "gatedrnn.nn.seq2seq",
    "gatedrnn.nn.ctc", "gatedrnn.nn.lm", "gatedrnn.nn.streaming", "gatedrnn.nn.regularization",
    "gatedrnn.nn.interop", "gatedrnn.losses", "gatedrnn.tasks.base", "gatedrnn.train.loop", "gatedrnn.train.runs",
    "gatedrnn.train.config",
)
PAGES = (  # docs/ pages in the site's navigation; any other docs/*.md is still built and linkable
    ("Home", "index.md"), ("Installing", "install.md"), ("Cells and the scan engine", "cells.md"), ("Layers and architectures", "layers.md"),
    ("Training", "training.md"), ("Config reference", "config.md"), ("Tasks and results", "experiments.md"),
    ("Results suite", "results_suite.md"), ("Studies and notebooks", "studies.md"),
    ("Performance", "performance.md"), ("Layout and contributing", "layout.md"),
)


def _repo() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _yaml_list(items) -> str:
    return "\n".join(items)


def build_site(out: str, *, repo: str | None = None) -> str:
    """Builds the site into `out` (replaced); returns `out`. Raises RuntimeError with mkdocs' log."""
    repo = repo or _repo()
    missing = [m for m in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python") if importlib.util.find_spec(m) is None]
    if missing:  # found, not imported: mkdocs runs in its own process
        raise RuntimeError(f"building the docs needs {missing}: pip install -e '.[test]'")
    with tempfile.TemporaryDirectory() as scratch:
        src = os.path.join(scratch, "docs")
        shutil.copytree(os.path.join(repo, "docs"), src)
        with open(os.path.join(repo, "README.md")) as f:
            readme = f.read()
        with open(os.path.join(src, "index.md"), "w") as f:  # the front page, its links made site-relative
            f.write(readme.replace("](docs/", "]("))
        os.makedirs(os.path.join(src, "api"))
        for module in API_MODULES:
            with open(os.path.join(src, "api", f"{module}.md"), "w") as f:
                f.write(f"# `{module}`\n\n::: {module}\n")
        nav = [f"  - {title!r}: {page}" for title, page in PAGES]
        nav.append("  - API reference:")
        nav += [f"    - {m}: api/{m}.md" for m in API_MODULES]
        config = f"""site_name: gatedrnn
docs_dir: docs
site_dir: {os.path.abspath(out)!r}
use_directory_urls: false
nav:
{_yaml_list(nav)}
plugins:
  - search
  - mkdocstrings:
      handlers:
        python:
          paths: [{repo!r}]
          options:
            docstring_style: null
            show_source: false
            show_root_heading: false
            members_order: source
validation:
  omitted_files: ignore
  links:
    not_found: warn
    anchors: ignore
    unrecognized_links: ignore
"""
        with open(os.path.join(scratch, "mkdocs.yml"), "w") as f:
            f.write(config)
        shutil.rmtree(out, ignore_errors=True)
        done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                               os.path.join(scratch, "mkdocs.yml")], capture_output=True, text=True,
                              env={**os.environ, "JAX_PLATFORMS": "cpu"})
        if done.returncode:
            raise RuntimeError(f"mkdocs build failed:\n{done.stdout}{done.stderr}")
    return out
