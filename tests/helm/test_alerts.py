"""The chart's alert rules, as rendered, under ``promtool check rules`` and ``test rules``.

Each alert gets a series history that must fire it (with its labels and every annotation
expanded) and a healthy neighbour that must not; the runbook link of each alert must
land on a section of docs/runbook.md.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import REPO, one, render_chart
from tests.prometheus import prometheus_tool

RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL = "https://example.test/runbook.md"
Obj = dict[str, Any]

SERVER = 'namespace="prod",job="chat"'
QUIET = 'namespace="prod",job="quiet"'
OPERATOR = 'job="roomcast-operator",instance="10.0.0.9:8081"'

#: alert -> (input series, eval time, expected alert labels, expected summary)
CASES: dict[str, tuple[list[tuple[str, str]], str, dict[str, str], str]] = {
    "RoomcastEngineUnavailable": (
        [
            (f'roomcast_engine_available{{{SERVER},pod="chat-a"}}', "1 1 0x8"),
            (f'roomcast_engine_available{{{SERVER},pod="chat-b"}}', "1x10"),
        ],
        "6m",
        {"severity": "critical", "namespace": "prod", "job": "chat", "pod": "chat-a"},
        "Roomcast pod prod/chat-a cannot reach its engine",
    ),
    "RoomcastPublishLatencyHigh": (
        [
            (f'roomcast_publish_to_write_seconds_bucket{{{SERVER},le="0.1"}}', "0x30"),
            (f'roomcast_publish_to_write_seconds_bucket{{{SERVER},le="0.25"}}', "0x30"),
            (f'roomcast_publish_to_write_seconds_bucket{{{SERVER},le="0.5"}}', "0+60x30"),
            (f'roomcast_publish_to_write_seconds_bucket{{{SERVER},le="+Inf"}}', "0+60x30"),
            (f'roomcast_publish_to_write_seconds_bucket{{{QUIET},le="0.1"}}', "0+60x30"),
            (f'roomcast_publish_to_write_seconds_bucket{{{QUIET},le="0.25"}}', "0+60x30"),
            (f'roomcast_publish_to_write_seconds_bucket{{{QUIET},le="0.5"}}', "0+60x30"),
            (f'roomcast_publish_to_write_seconds_bucket{{{QUIET},le="+Inf"}}', "0+60x30"),
        ],
        "20m",
        {"severity": "warning", "namespace": "prod", "job": "chat"},
        "Roomcast prod/chat: p99 publish-to-write latency is 497.5ms",
    ),
    "RoomcastSlowConsumerDisconnectsSurging": (
        [
            (f'roomcast_disconnects_total{{{SERVER},pod="chat-a",code="3008"}}', "0+10x30"),
            (f'roomcast_connections{{{SERVER},pod="chat-a"}}', "1000x30"),
            # As many cuts, but a tiny share of a large fleet's connections.
            (f'roomcast_disconnects_total{{{QUIET},pod="quiet-a",code="3008"}}', "0+10x30"),
            (f'roomcast_connections{{{QUIET},pod="quiet-a"}}', "100000x30"),
        ],
        "20m",
        {"severity": "warning", "namespace": "prod", "job": "chat"},
        "Roomcast prod/chat cut 100 slow consumers in 10 minutes",
    ),
    "RoomcastConnectionErrorRatioHigh": (
        [
            (f'roomcast_connects_total{{{SERVER},pod="chat-a",result="accepted"}}', "0+60x30"),
            (
                f'roomcast_disconnects_total{{{SERVER},pod="chat-a",code="3500",terminal="true"}}',
                "0+40x30",
            ),
            (f'roomcast_connects_total{{{SERVER},pod="chat-a",result="rejected"}}', "0+20x30"),
            # Disconnects an operator asked for are no connection errors.
            (
                f'roomcast_disconnects_total{{{QUIET},pod="quiet-a",code="3503",terminal="true"}}',
                "0+600x30",
            ),
            (f'roomcast_connects_total{{{QUIET},pod="quiet-a",result="accepted"}}', "0+600x30"),
            (f'roomcast_connects_total{{{QUIET},pod="quiet-a",result="rejected"}}', "0+6x30"),
        ],
        "20m",
        {"severity": "warning", "namespace": "prod", "job": "chat"},
        "Roomcast prod/chat: 50% of connection attempts fail",
    ),
    "RoomcastPodsUnbalanced": (
        [
            (f'roomcast_connections{{{SERVER},pod="chat-a"}}', "900x50"),
            (f'roomcast_connections{{{SERVER},pod="chat-b"}}', "100x50"),
            (f'roomcast_connections{{{SERVER},pod="chat-c"}}', "100x50"),
            (f'roomcast_connections{{{QUIET},pod="quiet-a"}}', "500x50"),
            (f'roomcast_connections{{{QUIET},pod="quiet-b"}}', "450x50"),
        ],
        "40m",
        {"severity": "warning", "namespace": "prod", "job": "chat"},
        "Roomcast prod/chat: the busiest pod holds 900 connections, far above the average",
    ),
    "RoomcastNoReadyPods": (
        [
            (
                f'roomcast_operator_cluster_replicas{{{OPERATOR},cluster_namespace="prod",cluster="chat"}}',
                "3x10",
            ),
            (
                f'roomcast_operator_cluster_ready_replicas{{{OPERATOR},cluster_namespace="prod",cluster="chat"}}',
                "3 3 0x8",
            ),
            # Scaled to zero on purpose: nothing to alert on.
            (
                f'roomcast_operator_cluster_replicas{{{OPERATOR},cluster_namespace="prod",cluster="idle"}}',
                "0x10",
            ),
            (
                f'roomcast_operator_cluster_ready_replicas{{{OPERATOR},cluster_namespace="prod",cluster="idle"}}',
                "0x10",
            ),
        ],
        "6m",
        {
            "severity": "critical",
            "cluster_namespace": "prod",
            "cluster": "chat",
            "job": "roomcast-operator",
            "instance": "10.0.0.9:8081",
        },
        "Roomcast cluster prod/chat has no ready pod",
    ),
    "RoomcastReleaseRolledBack": (
        [
            (
                f'roomcast_operator_cluster_rolled_back{{{OPERATOR},cluster_namespace="prod",cluster="chat",reason="AutoRollback"}}',
                "0 0 1x5",
            ),
            (
                f'roomcast_operator_cluster_rolled_back{{{OPERATOR},cluster_namespace="prod",cluster="idle",reason="RunningSpec"}}',
                "0x7",
            ),
        ],
        "4m",
        {
            "severity": "warning",
            "cluster_namespace": "prod",
            "cluster": "chat",
            "reason": "AutoRollback",
            "job": "roomcast-operator",
            "instance": "10.0.0.9:8081",
        },
        "Roomcast cluster prod/chat runs a rolled-back release (AutoRollback)",
    ),
    "RoomcastOperatorReconcileFailing": (
        [
            (
                f'roomcast_operator_reconciles_total{{{OPERATOR},cluster_namespace="prod",cluster="chat",result="error"}}',
                "0+1x30",
            ),
            (
                f'roomcast_operator_reconciles_total{{{OPERATOR},cluster_namespace="prod",cluster="chat",result="ok"}}',
                "5x30",
            ),
            # Occasional errors between successes are retried, not an outage.
            (
                f'roomcast_operator_reconciles_total{{{OPERATOR},cluster_namespace="prod",cluster="idle",result="error"}}',
                "0+1x30",
            ),
            (
                f'roomcast_operator_reconciles_total{{{OPERATOR},cluster_namespace="prod",cluster="idle",result="ok"}}',
                "0+20x30",
            ),
        ],
        "20m",
        {"severity": "warning", "cluster_namespace": "prod", "cluster": "chat"},
        "roomcast-operator cannot reconcile prod/chat",
    ),
}


@pytest.fixture(scope="module")
def rule_groups(helm: str) -> list[Obj]:
    objects = render_chart(
        helm, sets=["prometheusRule.enabled=true", f"prometheusRule.runbookURL={RUNBOOK_URL}"]
    )
    groups: list[Obj] = one(objects, "PrometheusRule")["spec"]["groups"]
    return groups


def alerts(groups: list[Obj]) -> dict[str, Obj]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def _promtool(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [prometheus_tool("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def test_every_alert_has_a_case() -> None:
    rendered = set(
        alerts(yaml.safe_load((REPO / "helm/roomcast/files/alerts.yaml").read_text())["groups"])
    )
    assert rendered == set(CASES)


def test_rules_pass_promtool_check(rule_groups: list[Obj], tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}))
    _promtool("check", "rules", "--lint-fatal", "rules.yaml", cwd=tmp_path)


def test_alerts_fire_on_their_cases_only(rule_groups: list[Obj], tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}))
    rules = alerts(rule_groups)
    tests = []
    for name, (series, at, labels, summary) in CASES.items():
        rule = rules[name]
        annotations = {
            "summary": summary,
            "description": rule["annotations"]["description"],
            "runbook_url": rule["annotations"]["runbook_url"],
        }
        tests.append(
            {
                "name": name,
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    # Not at the start: every alert waits for rates or for its `for`.
                    {"eval_time": "0m", "alertname": name, "exp_alerts": []},
                    {
                        "eval_time": at,
                        "alertname": name,
                        "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
                    },
                ],
            }
        )
    cases = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump(cases, sort_keys=False))
    _promtool("test", "rules", "cases.yaml", cwd=tmp_path)


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_to_its_runbook_section(rule_groups: list[Obj]) -> None:
    anchors = _anchors(RUNBOOK.read_text())
    for name, rule in alerts(rule_groups).items():
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base == RUNBOOK_URL, name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no section #{anchor}"
        assert {"summary", "description"} <= set(rule["annotations"]), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name


def test_thresholds_come_from_values(helm: str, tmp_path: Path) -> None:
    values = {
        "prometheusRule": {
            "enabled": True,
            "thresholds": {"publishLatencyP99Seconds": 0.5},
            "labels": {"release": "kube-prometheus-stack"},
        }
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    objects = render_chart(helm, values=[tmp_path / "values.yaml"])
    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    expr = alerts(rule["spec"]["groups"])["RoomcastPublishLatencyHigh"]["expr"]
    assert expr.rstrip().endswith("> 0.5")
    assert "__" not in yaml.safe_dump(rule["spec"])


def test_off_by_default(helm: str) -> None:
    assert not [o for o in render_chart(helm) if o["kind"] == "PrometheusRule"]
