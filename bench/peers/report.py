"""The comparison's results as JSON, a markdown table and one PNG chart per scenario."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: metric -> (label, unit); every metric here is better when lower unless listed in HIGHER
METRICS: dict[str, tuple[str, str]] = {
    "cpu_us_per_delivery": ("server CPU per delivery", "µs"),
    "cpu_us_per_publication": ("server CPU per publication", "µs"),
    "deliveries_per_s": ("deliveries per second", "/s"),
    "p50_ms": ("publish-to-receive p50", "ms"),
    "p99_ms": ("publish-to-receive p99", "ms"),
    "last_p50_ms": ("time to last subscriber p50", "ms"),
    "last_p99_ms": ("time to last subscriber p99", "ms"),
    "rss_kib_per_conn": ("RSS per connection", "KiB"),
    "rss_mib_fresh": ("RSS of a fresh server", "MiB"),
    "go_heap_kib_per_conn": ("Go heap in use per connection after GC", "KiB"),
    "cpu_us_per_connect": ("server CPU per connect", "µs"),
    "connects_per_s": ("connects per second", "/s"),
    "all_connected_s": ("time until all connected", "s"),
    "ready_p99_ms": ("connect p99", "ms"),
    "reconnect_p50_ms": ("reconnect p50 (closed to subscribed again)", "ms"),
    "reconnect_p99_ms": ("reconnect p99 (closed to subscribed again)", "ms"),
    "all_reconnected_s": ("time until all reconnected", "s"),
    "connect_failures": ("failed reconnect attempts", ""),
    "cpu_us_per_reconnect": ("second server's CPU per reconnect", "µs"),
}
HIGHER = {"deliveries_per_s", "connects_per_s"}

#: what the table shows per scenario, the case's primary metric first
SHOWN: dict[str, list[str]] = {
    "fanout": ["cpu_us_per_delivery", "p99_ms", "deliveries_per_s"],
    "idle": ["rss_kib_per_conn", "go_heap_kib_per_conn"],
    "handshake": ["cpu_us_per_connect", "connects_per_s"],
    "last": ["last_p99_ms", "last_p50_ms"],
    "rooms": ["cpu_us_per_publication", "p99_ms", "deliveries_per_s"],
    "storm": ["all_connected_s", "cpu_us_per_connect", "ready_p99_ms"],
    "drain": [
        "reconnect_p99_ms",
        "reconnect_p50_ms",
        "all_reconnected_s",
        "connect_failures",
        "cpu_us_per_reconnect",
    ],
    "redis": ["cpu_us_per_delivery", "p99_ms", "deliveries_per_s"],
}


def number(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f} k"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread_text(spread: dict[str, float] | None, percent: bool = False) -> str:
    if not spread:
        return "-"
    if percent:
        return f"{spread['median'] * 100:.0f}%"
    return number(spread["median"])


def figure_text(summary: dict[str, Any], metric: str, rounds: int) -> str:
    spread = summary.get(metric)
    if not spread:
        return ""
    label, unit = METRICS[metric]
    text = f"{label} {number(spread['median'])} {unit}"
    if rounds > 1:
        text += f" ({number(spread['min'])}-{number(spread['max'])})"
    return text


def markdown(results: dict[str, Any]) -> str:
    titles = {p["name"]: p["title"] for p in results["peers"]}
    lines = [
        "| Case | Server | Figures: median (range over rounds) | vs Roomcast | Delivered "
        "| Pubs/frame | Server busy | Writes/delivery | Others on core |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case_name, case in results.get("cases", {}).items():
        primary = case["primary"]
        base = (case["peers"].get("roomcast") or {}).get("summary") or {}
        base_value = (base.get(primary) or {}).get("median")
        for peer, data in case["peers"].items():
            summary = data["summary"]
            if summary is None:
                error = (data["errors"] or ["no run"])[0].splitlines()[0][:80]
                lines.append(f"| {case_name} | {titles[peer]} | failed: {error} | | | | | | |")
                continue
            rounds = summary["rounds"]
            shown = [m for m in SHOWN[case["scenario"]] if m in summary]
            figures = "; ".join(figure_text(summary, m, rounds) for m in shown)
            value = (summary.get(primary) or {}).get("median")
            ratio = f"{value / base_value:.2f}x" if value is not None and base_value else "-"
            others = spread_text(summary.get("others_on_core"), percent=True)
            if summary["flagged"]:
                others += f" **flagged {summary['flagged']}/{rounds}**"
            lines.append(
                f"| {case_name} | {titles[peer]} | {figures} | {ratio} "
                f"| {spread_text(summary.get('delivered'), percent=True)} "
                f"| {spread_text(summary.get('pubs_per_frame'))} "
                f"| {spread_text(summary.get('server_busy'), percent=True)} "
                f"| {spread_text(summary.get('writes_per_delivery'))} | {others} |"
            )
    return "\n".join(lines) + "\n"


def compact_markdown(results: dict[str, Any]) -> str:
    """One row per case, one column per server: the primary figure's median and its
    ratio to Roomcast's; a dagger marks a figure with a flagged round."""
    peers = [p["name"] for p in results["peers"]]
    titles = {p["name"]: p["title"] for p in results["peers"]}
    lines = [
        "| Case | Figure | " + " | ".join(titles[p] for p in peers) + " |",
        "|---|---|" + "---|" * len(peers),
    ]
    for case in results.get("cases", {}).values():
        primary = case["primary"]
        label, unit = METRICS[primary]
        base = ((case["peers"].get("roomcast") or {}).get("summary") or {}).get(primary)
        cells = []
        for peer in peers:
            data = case["peers"].get(peer)
            summary = (data or {}).get("summary") or {}
            spread = summary.get(primary)
            if data is None:
                cells.append("n/a")
            elif not spread:
                cells.append("failed")
            else:
                cell = number(spread["median"])
                if base and peer != "roomcast":
                    cell += f" ({spread['median'] / base['median']:.2f}x)"
                if summary.get("flagged"):
                    cell += " †"
                cells.append(cell)
        lines.append(f"| {case['description']} | {label} ({unit}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cost_markdown(model: dict[str, Any]) -> str:
    if not model.get("peers"):
        return ""
    assumptions = model["assumptions"]
    lines = [
        f"Fleet for {assumptions['connections']:,} connections and "
        f"{assumptions['deliveries_per_s']:,} deliveries/s "
        f"(cores at {assumptions['core_utilisation'] * 100:.0f}%):",
        "",
        "| Server | Cores | Pods | Memory | Redis shards | From |",
        "|---|---|---|---|---|---|",
    ]
    for row in model["peers"].values():
        lines.append(
            f"| {row['title']} | {row['cores']:.1f} | {row['pods']} "
            f"| {row['memory_gib']:.1f} GiB | {row['redis_shards']} | {row['inputs_text']} |"
        )
    published = model["published"]
    lines += ["", f"Published: {published['text']}", ""]
    return "\n".join(lines)


def charts(results: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per scenario: the primary figure per server, median with the range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {p["name"]: p["title"] for p in results["peers"]}
    by_scenario: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, case in results.get("cases", {}).items():
        by_scenario.setdefault(case["scenario"], []).append((name, case))
    written: list[Path] = []
    for scenario, entries in by_scenario.items():
        fig, axes = plt.subplots(
            len(entries), 1, figsize=(8, 1.2 + 2.0 * len(entries)), squeeze=False
        )
        for ax, (_name, case) in zip(axes[:, 0], entries, strict=True):
            primary = case["primary"]
            label, unit = METRICS[primary]
            names, values, low, high, hatches = [], [], [], [], []
            for peer, data in case["peers"].items():
                spread = (data["summary"] or {}).get(primary)
                if not spread:
                    continue
                names.append(titles[peer])
                values.append(spread["median"])
                low.append(spread["median"] - spread["min"])
                high.append(spread["max"] - spread["median"])
                hatches.append("//" if data["summary"]["flagged"] else "")
            if not names:
                ax.set_visible(False)
                continue
            colors = ["#c0392b" if n.startswith("Roomcast") else "#7f8c8d" for n in names]
            bars = ax.barh(names, values, xerr=[low, high], color=colors, capsize=3)
            for bar, hatch in zip(bars, hatches, strict=True):
                bar.set_hatch(hatch)
            ax.invert_yaxis()
            better = "higher" if primary in HIGHER else "lower"
            ax.set_title(f"{case['description']}", fontsize=9)
            ax.set_xlabel(f"{label} ({unit}), {better} is better", fontsize=8)
            ax.tick_params(labelsize=8)
            for bar, value in zip(bars, values, strict=True):
                ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {number(value)}",
                        va="center", fontsize=7)  # fmt: skip
        note = "median and range over rounds; hatched: another process used the server core"
        fig.suptitle(f"{scenario} ({'quick sizes' if results['quick'] else 'full sizes'}); "
                     f"{note}", fontsize=8)  # fmt: skip
        fig.tight_layout()
        path = out / f"{scenario}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(results: dict[str, Any], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    note = (
        "Interrupted: only the runs finished before the stop.\n"
        if results.get("interrupted")
        else ""
    )
    text = "\n".join(
        [
            note + compact_markdown(results),
            "(x): ratio to Roomcast; †: a round where other processes used the server core",
            "",
            markdown(results),
            cost_markdown(results.get("cost_model", {})),
        ]
    )
    (out / "results.md").write_text(text)
    latest = out.parent / "peers-latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(out.name)
    figures = charts(results, out)
    return {"json": out / "results.json", "markdown": out / "results.md", "charts": figures}
