"""Run the official SDKs' own integration suites against Roomcast.

centrifuge-go's module on the Go module proxy carries its client tests, and
centrifuge-python's source distribution on PyPI carries its test package. Both expect a
Centrifugo on localhost:8000 configured as in their docker-compose.yml; this runs
Roomcast with the equivalent settings (``conformance/<sdk>.json``) instead, runs each
suite unchanged but for one line (Python signs tokens with a 6-byte secret, which
Roomcast refuses: the line is replaced by a 35-byte one), and compares every test's
outcome with ``conformance/expected.json``, where the features Roomcast does not offer
are listed with the reason (and, for ``--skip-expected``, an optional Go ``-test.skip``
expression, ``go_skip``, leaving them out). A test that fails without being listed, or passes while
listed, fails the run, as does a listed pattern that matches nothing.

The suites dial fixed ports, so where the kernel allows it (root, or unprivileged user
namespaces) they and Roomcast run in a network namespace of their own: a Roomcast already
serving on port 8000 (``make run``) does not get in the way. The suites are fetched and
built before, outside it, where the registries are reachable.

centrifuge-js publishes no tests in its npm package, so it has no row here.

Usage: .venv/bin/python conformance/run.py [--sdk go|python ...] [--engine memory|redis]
       [--skip-expected]
Results: .conformance/results.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = ROOT / ".conformance"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "roomcast" / "conformance"
GO_MODULE = "github.com/centrifugal/centrifuge-go"
GO_VERSION = "v0.12.1"
PYTHON_DIST = "centrifuge-python"
#: the suites dial these; Roomcast serves the first, the second must refuse connections
SUITE_PORT = 8000
DEAD_PORT = 9000
PY_SECRET_LINE = 'hmac_secret = "secret"'
PY_SECRET = "conformance-secret-0123456789abcdef"


@dataclass
class Outcome:
    sdk: str
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    expected_failures: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="roomcast-conformance-redis-")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def roomcast(sdk: str, engine: str, log_path: Path) -> Iterator[None]:
    """Roomcast on 127.0.0.1:8000 with the settings the SDK's suite expects."""
    for port, role in ((SUITE_PORT, "Roomcast"), (DEAD_PORT, "the suites' refused address")):
        if _port_open(port):
            raise RuntimeError(f"port {port} is in use; it must be free for {role}")
    config = json.loads((HERE / f"{sdk}.json").read_text())
    config["http_server"] = {"address": "127.0.0.1", "port": SUITE_PORT}
    with contextlib.ExitStack() as stack:
        if engine == "redis":
            config["engine"] = {
                "type": "redis",
                "redis": {"address": [stack.enter_context(_redis())]},
            }
        config_path = log_path.with_suffix(".config.json")
        config_path.write_text(json.dumps(config))
        roomcast_bin = Path(sys.executable).with_name("roomcast")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(roomcast_bin), "--config", str(config_path), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            deadline = time.monotonic() + 15
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"roomcast exited:\n{log_path.read_text()[-2000:]}")
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{SUITE_PORT}/health", timeout=1)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("roomcast did not become healthy")
                time.sleep(0.05)
            yield
        finally:
            proc.kill()
            proc.wait()


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=900
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result.stdout


# --- Go -------------------------------------------------------------------------------


def go_suite() -> tuple[Path, Path]:
    """The module's source and its compiled test binary, built once and cached."""
    home = CACHE / f"centrifuge-go-{GO_VERSION}"
    binary = home / "suite.test"
    source = home / "src"
    if binary.is_file():
        return source, binary
    CACHE.mkdir(parents=True, exist_ok=True)
    go = shutil.which("go") or "/usr/local/go/bin/go"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    info = json.loads(_run([go, "mod", "download", "-json", f"{GO_MODULE}@{GO_VERSION}"], env=env))
    staging = Path(tempfile.mkdtemp(prefix="centrifuge-go-", dir=CACHE))
    shutil.copytree(info["Dir"], staging / "src")
    for path in (staging / "src").rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    _run([go, "test", "-c", "-o", str(staging / "suite.test"), "."], cwd=staging / "src", env=env)
    shutil.rmtree(home, ignore_errors=True)
    staging.rename(home)
    return source, binary


_GO_RESULT = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+)")


def run_go(skip: str | None, log_dir: Path) -> tuple[list[str], list[str]]:
    source, binary = go_suite()
    cmd = [str(binary), "-test.v", "-test.timeout", "600s", "-test.count", "1"]
    if skip:
        cmd += ["-test.skip", skip]
    result = subprocess.run(cmd, cwd=source, capture_output=True, text=True, timeout=900)
    (log_dir / "go.log").write_text(result.stdout + result.stderr)
    passed, failed = [], []
    for line in result.stdout.splitlines():
        match = _GO_RESULT.match(line)
        if match and match.group(1) == "PASS":
            passed.append(match.group(2))
        elif match and match.group(1) == "FAIL":
            failed.append(match.group(2))
    if result.returncode != 0 and not failed:
        raise RuntimeError(f"the Go suite failed without a test result:\n{result.stdout[-3000:]}")
    return passed, failed


# --- Python ---------------------------------------------------------------------------


def python_suite() -> Path:
    """The sdist of the installed centrifuge-python, unpacked with the secret line replaced."""
    from importlib.metadata import version

    release = version(PYTHON_DIST)
    home = CACHE / f"centrifuge-python-{release}"
    if (home / "tests").is_dir():
        return home
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="centrifuge-python-", dir=CACHE))
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
          ":all:", f"{PYTHON_DIST}=={release}", "-d", str(staging)])  # fmt: skip
    (archive,) = staging.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    (unpacked,) = (p for p in staging.iterdir() if p.is_dir())
    test_client = unpacked / "tests" / "test_client.py"
    text = test_client.read_text()
    if PY_SECRET_LINE not in text:
        raise RuntimeError(f"{test_client}: the token secret line changed; update run.py")
    test_client.write_text(text.replace(PY_SECRET_LINE, f'hmac_secret = "{PY_SECRET}"'))
    shutil.rmtree(home, ignore_errors=True)
    unpacked.rename(home)
    shutil.rmtree(staging, ignore_errors=True)
    return home


_PY_RESULT = re.compile(r"^(PASSED|FAILED|ERROR|SUBPASSED|SUBFAILED)(\(([^)]*)\))? (\S+)")


def run_python(log_dir: Path) -> tuple[list[str], list[str]]:
    source = python_suite()
    # The suite is unittest-based; pytest runs it with per-test timeouts. Two module
    # helpers are named test_*; unittest ignores them, pytest must be told to.
    cmd = [sys.executable, "-m", "pytest", "tests", "-rA", "-q", "-p", "no:cacheprovider",
           "--timeout", "60", "-o", "log_cli=false",
           "--deselect", "tests/test_client.py::test_get_client_token",
           "--deselect", "tests/test_client.py::test_get_subscription_token"]  # fmt: skip
    result = subprocess.run(cmd, cwd=source, capture_output=True, text=True, timeout=1800)
    (log_dir / "python.log").write_text(result.stdout + result.stderr)
    passed, failed = [], []
    for line in result.stdout.splitlines():
        match = _PY_RESULT.match(line)
        if not match:
            continue
        kind, params, nodeid = match.group(1), match.group(3), match.group(4)
        name = f"{nodeid} [{params}]" if params else nodeid
        (passed if kind.endswith("PASSED") else failed).append(name)
    if result.returncode not in (0, 1) or not (passed or failed):
        raise RuntimeError(f"the Python suite did not run:\n{result.stdout[-3000:]}")
    return passed, failed


# --- comparison -----------------------------------------------------------------------


def judge(
    sdk: str, passed: list[str], failed: list[str], rules: list[dict[str, str]], *, complete: bool
) -> Outcome:
    """Sort results against the expected failures; anything unexplained is a problem.

    ``complete`` is false when the listed tests were skipped: then a parent whose failing
    subtests were left out passes, and that says nothing."""
    outcome = Outcome(sdk, passed=passed)
    used: set[str] = set()
    for name in failed:
        rule = next((r for r in rules if re.search(r["pattern"], name)), None)
        if rule is None:
            outcome.failed.append(name)
            outcome.problems.append(f"{sdk}: {name} failed")
        else:
            outcome.expected_failures[name] = rule["reason"]
            used.add(rule["pattern"])
    for name in passed if complete else ():
        for rule in rules:
            if re.search(rule["pattern"], name):
                outcome.problems.append(
                    f"{sdk}: {name} passed but is listed as failing ({rule['reason']}); "
                    "update conformance/expected.json"
                )
    return outcome


def table(outcomes: list[Outcome], engine: str) -> str:
    lines = [
        f"| SDK suite (engine: {engine}) | passed | failed | not offered | time |",
        "|---|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        reasons = sorted(set(o.expected_failures.values()))
        lines.append(
            f"| {o.sdk} | {len(o.passed)} | {len(o.failed)} | "
            f"{len(o.expected_failures)} ({'; '.join(reasons) or '-'}) | {o.seconds:.0f} s |"
        )
    return "\n".join(lines)


_ISOLATED = "ROOMCAST_CONFORMANCE_ISOLATED"


def isolation() -> list[str] | None:
    """The command prefix that gives a process a private network, if this host allows it."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        return None
    prefix = [unshare, "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    return prefix if probe.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdk", action="append", choices=("go", "python"))
    parser.add_argument("--engine", choices=("memory", "redis"), default="memory")
    parser.add_argument(
        "--skip-expected",
        action="store_true",
        help="do not run the Go tests listed as failing (a faster check for regressions)",
    )
    args = parser.parse_args(argv)
    sdks = args.sdk or ["go", "python"]
    if os.environ.get(_ISOLATED) != "1":
        if "go" in sdks:
            go_suite()
        if "python" in sdks:
            python_suite()
        prefix = isolation()
        if prefix is not None:
            script = 'ip link set lo up && exec "$0" "$@"'
            command = [*prefix, "sh", "-c", script, sys.executable, __file__, *argv]
            return subprocess.run(command, env={**os.environ, _ISOLATED: "1"}).returncode
    rules = json.loads((HERE / "expected.json").read_text())
    RESULTS.mkdir(exist_ok=True)
    outcomes = []
    for sdk in sdks:
        started = time.monotonic()
        with roomcast(sdk, args.engine, RESULTS / f"roomcast-{sdk}.log"):
            if sdk == "go":
                skip = rules.get("go_skip") if args.skip_expected else None
                passed, failed = run_go(skip, RESULTS)
            else:
                passed, failed = run_python(RESULTS)
        complete = not (args.skip_expected and sdk == "go")
        outcome = judge(sdk, passed, failed, rules[sdk], complete=complete)
        if complete:
            matched = set(outcome.expected_failures.values())
            for rule in rules[sdk]:
                if rule["reason"] not in matched:
                    outcome.problems.append(f"{sdk}: expected failure {rule['pattern']!r} unseen")
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
    (RESULTS / "results.json").write_text(
        json.dumps({"engine": args.engine, "suites": [vars(o) for o in outcomes]}, indent=2)
    )
    print(table(outcomes, args.engine))
    problems = [p for o in outcomes for p in o.problems]
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
