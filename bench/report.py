"""The table `make bench` prints, and the targets it checks."""

from __future__ import annotations

from typing import Any

from bench import sandbox as step_sandbox
from bench.common import ratio

METHOD = (
    "Method: one dev server (history.transferProcessorMaxPollRPS=1000, so back-to-back "
    "workflow tasks do not wait on its rate limit); the bare baseline has the promotion's "
    "shape (its local activities around two `true` activities); latency = median / p95 of "
    "{repeat} sequential runs after 3 warm-ups, server side from history.\n"
    "CPU = utime+stime from /proc/<pid>/stat before and after each batch, per workflow (steps = "
    "the workers' child processes; background = machine busy time from /proc/stat minus the "
    "measured processes); SQL counted by SQLAlchemy events on an in-process worker."
)


def _cpu_total(cpu: dict[str, float]) -> float:
    return cpu["worker"] + cpu["steps"] + cpu["server"] + cpu["database"]


def _cpu(cpu: dict[str, float]) -> str:
    db = f" + db {cpu['database']:.0f}" if cpu["database"] >= 0.5 else ""
    return (
        f"worker {cpu['worker']:.0f} + steps {cpu['steps']:.0f} + server {cpu['server']:.0f}"
        f"{db} = {_cpu_total(cpu):.0f} (driver {cpu['driver']:.0f}, "
        f"background {cpu['background']:.0f})"
    )


def _shape(facts: dict[str, Any]) -> str:
    return f"{facts['activities']} / {facts['local_activities']} / {facts['workflow_tasks']}"


def _latency_rows(results: dict[str, Any]) -> list[str]:
    p = results["promotion"]
    return [
        f"| promotion, server (median / p95 ms) | {p['server']['median_ms']:.0f} / "
        f"{p['server']['p95_ms']:.0f} | {p['baseline_server']['median_ms']:.0f} / "
        f"{p['baseline_server']['p95_ms']:.0f} | {p['ratio_server']} |",
        f"| promotion, client end to end (median / p95 ms) | {p['client']['median_ms']:.0f} / "
        f"{p['client']['p95_ms']:.0f} | {p['baseline_client']['median_ms']:.0f} / "
        f"{p['baseline_client']['p95_ms']:.0f} | {p['ratio_client']} |",
        f"| promotion: activities / local activities / workflow tasks | {_shape(p['shape'])} | "
        f"{_shape(p['baseline_shape'])} | |",
        f"| promotion, sequential: CPU per workflow (ms) | {_cpu(p['cpu_ms'])} | "
        f"{_cpu(p['baseline_cpu_ms'])} | "
        f"{ratio(_cpu_total(p['cpu_ms']), _cpu_total(p['baseline_cpu_ms']))} |",
    ]


def _rollback_rows(results: dict[str, Any]) -> list[str]:
    r = results["rollback"]
    return [
        f"| rollback, request to pointer moved (median / p95 ms) | "
        f"{r['request_to_pointer']['median_ms']:.0f} / {r['request_to_pointer']['p95_ms']:.0f}"
        f" | {r['baseline_server']['median_ms']:.0f} / {r['baseline_server']['p95_ms']:.0f} |"
        f" {r['ratio_pointer']} |",
        f"| rollback, whole workflow (median ms) | {r['server']['median_ms']:.0f} | "
        f"{r['baseline_server']['median_ms']:.0f} | {r['ratio']} |",
        f"| rollback: activities / local activities / workflow tasks | {_shape(r['shape'])} | "
        f"{_shape(r['baseline_shape'])} | |",
    ]


def _sql_rows(results: dict[str, Any]) -> list[str]:
    s = results["sql"]
    where = ", ".join(f"{k} {v:g}" for k, v in s["statements_by_activity"].items())
    box = "sandboxed steps" if s["sandboxed"] else "steps NOT sandboxed (no working bwrap)"
    return [
        f"| SQL per promotion, sqlite, in-process worker, {s['promotions']} sequential, {box} "
        f"(statements / transactions / commits) | {s['statements']:g} / "
        f"{s['transactions']:g} / {s['commits']:g} | | |",
        f"| SQL statements per promotion, by activity | {where} | | |",
        *_activity_cpu_rows("promotion", s.get("cpu_ms_by_activity")),
        *_rollback_sql_rows(s.get("rollback")),
    ]


def _activity_cpu_rows(kind: str, cpu: dict[str, float] | None) -> list[str]:
    if not cpu:
        return []
    where = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
    return [
        f"| worker CPU per {kind} inside its activities, same run (ms) | {where} "
        f"(total {sum(cpu.values()):.1f}) | | |"
    ]


def _rollback_sql_rows(r: dict[str, Any] | None) -> list[str]:
    if r is None:
        return []
    where = ", ".join(f"{k} {v:g}" for k, v in r["statements_by_activity"].items())
    return [
        f"| SQL per rollback, sqlite, {r['workflows']} sequential (statements / transactions / "
        f"commits) | {r['statements']:g} / {r['transactions']:g} / {r['commits']:g} | | |",
        f"| SQL statements per rollback, by activity | {where} | | |",
        *_activity_cpu_rows("rollback", r.get("cpu_ms_by_activity")),
    ]


def _throughput_rows(results: dict[str, Any]) -> list[str]:
    t = results["throughput"]
    # Each setup's own baseline, measured right after it (older results: one for all).
    bases = t.get("baselines") or [t["baseline"]] * len(t["setups"])
    lines = []
    for row, base in zip(t["setups"], bases, strict=True):
        lines += [
            f"| throughput, {row['workflows']} at once, {row['setup']} (completed/s, the "
            f"fastest burst{_rounds(row)}; worker peak RSS) | {row['per_second']} "
            f"({row['peak_rss_mb']:.0f} MB) | {base['per_second']}{_rounds(base)} "
            f"({base['peak_rss_mb']:.0f} MB) | {row['ratio']} |",
            f"| ... CPU per workflow in that burst (ms) | {_cpu(row['cpu_ms'])} | "
            f"{_cpu(base['cpu_ms'])} | "
            f"{ratio(_cpu_total(row['cpu_ms']), _cpu_total(base['cpu_ms']))} |",
        ]
    return lines


def _rounds(figures: dict[str, Any]) -> str:
    rounds = figures.get("rounds")
    return f" of {', '.join(str(r) for r in rounds)}" if rounds else ""


def _scale_rows(results: dict[str, Any], scale_apps: int) -> list[str]:
    lines = []
    for row in results["resolution"]["sizes"]:
        lines.append(
            f"| resolve + decrypt {row['entries']:,} entries (median ms) | "
            f"{row['resolve']['median_ms']:.1f} | {row['raw_decrypt']['median_ms']:.2f} (raw "
            f"AES-GCM) | {ratio(row['resolve']['median_ms'], row['raw_decrypt']['median_ms'])} |"
        )
    for view in results["views"]:
        lines.append(
            f"| status, {scale_apps} apps x 3 envs, {view['deployments']:,} deployments, "
            f"{view['backend']} (in process / CLI wall, median ms) | "
            f"{view['in_process']['median_ms']:.0f} / {view['cli_wall']['median_ms']:.0f} | | |"
        )
    return lines


def _throughput_targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    rows = results["throughput"]["setups"]
    found = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        one = next(r for r in rows if r["backend"] == backend and r["workers"] == 1)
        more = ", ".join(
            f"{r['workers']} workers: {r['ratio']}"
            for r in rows
            if r["backend"] == backend and r["workers"] > 1
        )
        found.append(
            (
                f"throughput ratio >= 0.6 ({backend}, 1 worker)",
                f"{one['ratio']}" + (f" ({more})" if more else ""),
                one["ratio"] >= 0.6,
            )
        )
    return found


def _sandbox_target(results: dict[str, Any]) -> tuple[str, str, bool]:
    steps = results["sandbox"]["steps"]
    worst = max(row["bwrap_ms"] for row in steps)
    measured = ", ".join(f"{row['program']} {row['bwrap_ms']:+.1f} ms" for row in steps)
    return (
        "step sandbox cost <= 10 ms per step (bwrap vs unsandboxed vfork)",
        measured,
        worst <= 10,
    )


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    res = results["resolution"]
    big = res["sizes"][-1]["resolve"]["median_ms"]
    per = res["per_entry_ms"]
    views = {v["backend"]: v["in_process"]["median_ms"] for v in results["views"]}
    promotion, rollback = results["promotion"]["ratio_server"], results["rollback"]["ratio"]
    return [
        ("promotion latency ratio <= 1.5 (median, server)", str(promotion), promotion <= 1.5),
        (
            "... at worst <= 2.0, with the profile of what remains (README Performance)",
            str(promotion),
            promotion <= 2.0,
        ),
        ("rollback ratio <= 1.5 (median, server)", str(rollback), rollback <= 1.5),
        *_throughput_targets(results),
        _sandbox_target(results),
        (
            "resolution linear (per-entry cost at 10k <= 3x at 1k)",
            f"{per[-1]:.4f} vs {per[-2]:.4f} ms",
            per[-1] <= 3 * per[-2],
        ),
        ("10,000 entries resolve in < 1 s", f"{big:.0f} ms", big < 1000),
        *[
            (f"status at scale < 200 ms in process ({backend})", f"{ms:.0f} ms", ms < 200)
            for backend, ms in views.items()
        ],
    ]


def report(results: dict[str, Any], scale_apps: int) -> str:
    lines = [
        "| measurement | stageline | bare Temporal | ratio |",
        "| --- | --- | --- | --- |",
        *_latency_rows(results),
        *_rollback_rows(results),
        *_sql_rows(results),
        *_throughput_rows(results),
        *_scale_rows(results, scale_apps),
        "",
        step_sandbox.report(results["sandbox"]),
        "",
        "| target | measured | holds |",
        "| --- | --- | --- |",
    ]
    for name, measured, holds in targets(results):
        lines.append(f"| {name} | {measured} | {'yes' if holds else 'NO'} |")
    lines += ["", METHOD.format(repeat=results["machine"]["repeat"])]
    return "\n".join(lines)
