"""Drive a cluster through kubectl, the same client a person would use.

Every call goes through the real API server (authentication, RBAC, admission,
validation); objects are passed as JSON, which kubectl reads as YAML.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


class KubectlError(RuntimeError):
    """kubectl exited non-zero; ``stderr`` holds its message."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def find_kubectl(tools_bin: Path | None = None) -> str:
    """ROOMCAST_KUBECTL, else the tool set's kubectl, else kubectl on PATH."""
    explicit = os.environ.get("ROOMCAST_KUBECTL")
    if explicit:
        return explicit
    if tools_bin is not None and (tools_bin / "kubectl").is_file():
        return str(tools_bin / "kubectl")
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("kubectl not found: run e2e/tools/build.sh or set ROOMCAST_KUBECTL")
    return found


@dataclass(frozen=True)
class Kube:
    """A kubectl bound to one kubeconfig (and optionally one identity)."""

    kubectl: str
    kubeconfig: Path
    extra_args: tuple[str, ...] = ()

    def as_token(self, token: str) -> Kube:
        """The same cluster, authenticated with a bearer token instead of the admin user."""
        return Kube(self.kubectl, self.kubeconfig, (*self.extra_args, f"--token={token}"))

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        timeout_seconds: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.kubectl, f"--kubeconfig={self.kubeconfig}", *self.extra_args, *args]
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(list(args), result.returncode, result.stdout, result.stderr)
        return result

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> Obj:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        parsed: Obj = json.loads(self.run(*args).stdout)
        return parsed

    def items(self, kind: str, namespace: str | None = None, selector: str = "") -> list[Obj]:
        args = ["get", kind, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        if selector:
            args += ["-l", selector]
        items: list[Obj] = json.loads(self.run(*args).stdout)["items"]
        return items

    def apply(self, obj: Obj, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        args = ["apply", "--server-side", "--field-manager=roomcast-e2e", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        return self.run(*args, stdin=json.dumps(obj))

    def create(
        self, obj: Obj, namespace: str | None = None, check: bool = True, validate: str = "strict"
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl create``; ``validate`` is kubectl's field validation (strict/warn/ignore)."""
        args = ["create", f"--validate={validate}", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        return self.run(*args, stdin=json.dumps(obj), check=check)

    def delete(self, kind: str, name: str, namespace: str | None = None, wait: bool = True) -> None:
        args = ["delete", kind, name, "--ignore-not-found", f"--wait={str(wait).lower()}"]
        if namespace:
            args += ["-n", namespace]
        self.run(*args)


def condition(obj: Obj, kind: str) -> Obj | None:
    """The status condition of the given type, if present."""
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == kind:
            found: Obj = cond
            return found
    return None
