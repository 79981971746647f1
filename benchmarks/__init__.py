"""interp's benchmark suite: cold start and execution latency beside same-run baselines.

Run it as ``interp bench`` (``--quick`` for CI, ``--check`` to enforce budgets.toml) or
``python -m interp.benchmarks``: one implementation behind both.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import docker
import psutil
from rich.console import Console
from rich.table import Table

from interp import IMAGE_VERSION, Config
from interp.sandbox._docker_client import choose_runtime

from ._hibernation import hibernation, sessions_held
from ._scenarios import (
    Measurement,
    Plan,
    cold_start,
    concurrency,
    docker_run_true,
    executions,
    first_real_result,
    interp_run,
    local_ipykernel,
    timed,
    warm_pool,
)

KNOWN_RUNTIMES = ("runc", "crun", "runsc")


def summarize(samples: list[float]) -> dict[str, float]:
    """p50, p95, p99, min, max (milliseconds) and n."""
    if not samples:
        return {"n": 0}
    ordered = sorted(s * 1e3 for s in samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
    }


def describe_machine(image: str) -> dict[str, Any]:
    client = docker.from_env()
    try:
        info = client.info()
        image_id = client.images.get(image).id
        chosen = choose_runtime(client, None)
    finally:
        client.close()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker": info.get("ServerVersion"),
        "cgroup": info.get("CgroupVersion"),
        "runtimes": sorted(r for r in info.get("Runtimes", {}) if r in KNOWN_RUNTIMES),
        "default_runtime": info.get("DefaultRuntime"),
        "interp_runtime": chosen or info.get("DefaultRuntime"),
        "image": image,
        "image_id": image_id,
        "image_version": IMAGE_VERSION,
    }


async def _measure(
    plan: Plan,
    machine: dict[str, Any],
    image: str,
    *,
    with_peers: bool = False,
    replicas: bool = False,
    sessions: int = 0,
) -> list[Measurement]:
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="interp-bench-") as scratch:
        root = Path(scratch)
        if replicas:
            from ._replicas import replicas as replica_rows

            return await timed("replicas", lambda: replica_rows(root / "replicas", plan))
        if sessions:
            return await timed(
                f"{sessions} sessions held", lambda: sessions_held(root / "held", sessions)
            )
        # The runtime interp picks by itself is "default" (the budget's); the others by name.
        for runtime in machine["runtimes"]:
            label = "default" if runtime == machine["interp_runtime"] else runtime
            results.append(docker_run_true(image, plan, runtime, label))
            print(f"  cold start ({runtime}) …", file=sys.stderr, flush=True)
            results += await cold_start(root / runtime, plan, runtime, label)
        results += await timed("local ipykernel baseline", lambda: local_ipykernel(plan))
        results += await timed("warm pool", lambda: warm_pool(root / "pool", plan))
        results += await timed("first real result", lambda: first_real_result(root / "w3", plan))
        results += await timed("executions", lambda: executions(root / "exec", plan))
        results += await timed("concurrency", lambda: concurrency(root / "conc", plan))
        results += await timed("hibernation", lambda: hibernation(root / "hibernate", plan))
        try:
            from ._server import server
        except ImportError as exc:  # the server extra is not installed
            print(f"  server: skipped ({exc.name} is missing)", file=sys.stderr, flush=True)
        else:
            from ._search import file_search

            results += await timed("server", lambda: server(root / "server", plan))
            results += await timed("file search", lambda: file_search(root / "search", plan))
        results.append(interp_run(plan, root / "cli"))
        if with_peers:
            from ._peers import peers

            runtime = machine["interp_runtime"]
            results += await timed("peers", lambda: peers(root / "peers", plan, image, runtime))
    return results


@dataclass
class Verdict:
    name: str
    ok: bool
    measured: str


def check_budgets(
    figures: dict[str, dict[str, float]], budgets: list[dict[str, Any]]
) -> list[Verdict]:
    verdicts = []
    for budget in budgets:
        measured = figures.get(budget["measure"], {}).get(budget["stat"])
        if measured is None:
            verdicts.append(Verdict(budget["name"], False, "not measured"))
            continue
        if "baseline" in budget:
            base = figures.get(budget["baseline"], {}).get(budget["stat"])
            if not base:
                verdicts.append(Verdict(budget["name"], False, "baseline not measured"))
                continue
            ratio = measured / base
            verdicts.append(Verdict(budget["name"], ratio <= budget["max_ratio"],
                                    f"{measured:.2f} vs {base:.2f} = {ratio:.2f}x"))  # fmt: skip
        elif "max" in budget:
            verdicts.append(Verdict(budget["name"], measured <= budget["max"], f"{measured:.2f}"))
        else:
            verdicts.append(Verdict(budget["name"], measured >= budget["min"], f"{measured:.2f}"))
    return verdicts


def _figures(results: list[Measurement]) -> dict[str, dict[str, float]]:
    figures = {}
    for m in results:
        summary = summarize(m.samples) if m.samples else {}
        figures[m.key] = {**summary, **m.values}
    return figures


def _table(results: list[Measurement], figures: dict[str, dict[str, float]]) -> Table:
    table = Table(title="interp benchmarks (ms unless said)", title_justify="left")
    for column in ("scenario", "p50", "p95", "p99", "min", "max", "n", "other"):
        table.add_column(column, justify="left" if column in ("scenario", "other") else "right")
    for m in results:
        f = figures[m.key]
        other = ", ".join(
            f"{v / 1024**2:.0f} MiB"
            if k == "bytes"
            else f"{v:.2f}x"
            if k == "ratio"
            else f"{k} {v:.1f}"
            for k, v in m.values.items()
        )
        cells = [f"{f[k]:.2f}" if k in f else "" for k in
                 ("p50_ms", "p95_ms", "p99_ms", "min_ms", "max_ms")]  # fmt: skip
        title = f"[dim]{m.title}[/]" if m.baseline else m.title
        table.add_row(title, *cells, str(int(f.get("n", 0))) if f.get("n") else "", other)
    return table


def _chart(results: list[Measurement], path: Path, machine: dict[str, Any]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    # Latency distributions only: not phases (indented) nor differences (may be negative).
    shown = [
        m
        for m in results
        if len(m.samples) >= 3 and not m.title.startswith("  ") and min(m.samples) > 0
    ]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(shown) + 1.5))
    data = [[s * 1e3 for s in m.samples] for m in shown]
    parts = ax.boxplot(data, vert=False, showfliers=True, patch_artist=True)
    for box, m in zip(parts["boxes"], shown, strict=True):
        box.set_facecolor("#dddddd" if m.baseline else "#7fb3d5")
    ax.set_yticks(range(1, len(shown) + 1), [m.title for m in shown], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale); grey = baseline")
    ax.set_title(
        f"interp latency distributions: {machine['cpus']} CPUs, Docker {machine['docker']},"
        f" {machine['date'][:10]}",
        fontsize=10,
    )
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(
    *,
    quick: bool,
    check: bool,
    out_dir: Path,
    budgets: Path | None = None,
    with_peers: bool = False,
    replicas: bool = False,
    sessions: int = 0,
) -> int:
    """Run the suite (with ``replicas``, the replicas' rows alone), print the table, write
    JSON and a chart; 1 if a budget is broken."""
    console = Console(width=max(Console().width, 150))
    image = Config().image
    machine = describe_machine(image)
    plan = Plan.quick() if quick else Plan.full()
    mode = "quick" if quick else "full"
    runtimes = ", ".join(machine["runtimes"])
    console.print(
        f"interp bench ({mode}) on {machine['cpus']} CPUs, Docker {machine['docker']},"
        f" runtimes {runtimes}"
    )
    results = asyncio.run(
        _measure(plan, machine, image, with_peers=with_peers, replicas=replicas, sessions=sessions)
    )
    figures = _figures(results)
    console.print(_table(results, figures))

    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    budget_text = (
        budgets.read_text()
        if budgets is not None
        else resources.files("interp.benchmarks").joinpath("budgets.toml").read_text()
    )
    # The replicas' rows and the sessions held are reported, not budgeted (two servers on
    # 2 cores share them; the sessions held is a capacity, taken once).
    budgeted = not (replicas or sessions)
    verdicts = check_budgets(figures, tomllib.loads(budget_text)["budget"]) if budgeted else []
    report = {
        "machine": machine,
        "mode": "quick" if quick else "full",
        "figures": figures,
        "titles": {m.key: m.title for m in results},
        "baselines": [m.key for m in results if m.baseline],
        "budgets": [v.__dict__ for v in verdicts],
    }
    json_path = out_dir / f"bench-{stamp}.json"
    json_path.write_text(json.dumps(report, indent=2))
    chart_path = out_dir / f"bench-{stamp}.png"
    charted = _chart(results, chart_path, machine)

    budget_table = Table(title="budgets", title_justify="left")
    for column in ("budget", "measured", ""):
        budget_table.add_column(column)
    for v in verdicts:
        budget_table.add_row(v.name, v.measured, "[green]ok[/]" if v.ok else "[red]BROKEN[/]")
    console.print(budget_table)
    console.print(f"figures: {json_path}" + (f"\nchart: {chart_path}" if charted else ""))
    broken = [v for v in verdicts if not v.ok]
    if check and broken:
        print(f"{len(broken)} budget(s) broken", file=sys.stderr)
        return 1
    return 0
