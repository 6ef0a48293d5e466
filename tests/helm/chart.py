"""Render the chart with the helm binary; shared by the chart tests."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "roomcast"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"

Obj = dict[str, Any]


def find_helm() -> str | None:
    """ROOMCAST_HELM, helm on PATH, or the pinned tool set (e2e/tools/build.sh)."""
    explicit = os.environ.get("ROOMCAST_HELM")
    if explicit:
        return explicit
    tools_bin = os.environ.get("ROOMCAST_TOOLS_BIN")
    if tools_bin and Path(tools_bin, "helm").is_file():
        return str(Path(tools_bin, "helm"))
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    built = sorted(glob.glob(f"{cache}/roomcast/tools/*/bin/helm"))
    return built[-1] if built else None


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def template_args(
    release: str = "roomcast",
    namespace: str = "roomcast",
    values: list[Path] | None = None,
    sets: list[str] | None = None,
) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for path in values or []:
        args += ["--values", str(path)]
    for item in sets or []:
        args += ["--set", item]
    return args


def render_chart(helm: str, *, with_tests: bool = True, **kwargs: Any) -> list[Obj]:
    """Every object the chart renders (hooks included unless with_tests is False)."""
    args = template_args(**kwargs)
    if not with_tests:
        args.append("--skip-tests")
    text = run_helm(helm, *args).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Obj], kind: str) -> Obj:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
