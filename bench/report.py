"""The verdict table (console and docs/performance.md) and the two charts.

docs/performance.md is prose written by people around a generated block: only the text
between the `bench:results` markers is replaced, so the explanation survives every run.
"""

from __future__ import annotations

from typing import Any

from bench import svg
from bench.procs import ROOT

DOC = ROOT / "docs" / "performance.md"
LATENCY_SVG = ROOT / "docs" / "perf-latency.svg"
CPU_SVG = ROOT / "docs" / "perf-cpu.svg"
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"

Row = tuple[str, str, str, str, str, str]  # scenario, measure, result, target, verdict, OWUI
HEADER: Row = ("Scenario", "Measure", "Result", "Target", "Verdict", "Open WebUI 0.12.4")


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "met" if ok else "**MISSED**"


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def latency_rows(r: dict[str, Any]) -> list[Row]:
    lat = r.get("relay_latency")
    if not lat:
        return [("Relay latency", "—", "not run", "", "n/a", "")]
    rows: list[Row] = []
    limits = {"1": 25.0, "100": 100.0}
    others = {"100": "p99 ≈ 210 ms"}
    for n, point in lat.items():
        limit = limits.get(n)
        rows.append(
            (
                "Relay latency",
                f"added latency p50 / p95 / p99, {n} stream{'s' if n != '1' else ''} "
                f"(median of {point['runs']} runs)",
                f"{ms(point['p50_ms'])} / {ms(point['p95_ms'])} / {ms(point['p99_ms'])}",
                f"p99 ≤ {limit:g} ms" if limit else "—",
                verdict(point["p99_ms"] <= limit) if limit and point["p99_ms"] else "n/a",
                others.get(n, ""),
            )
        )
    steady = lat.get("100", {}).get("steady_p99_ms")
    if steady is not None:
        rows.append(
            (
                "Relay latency",
                "added latency p99, 100 streams, outside the start and end bursts (tokens "
                "stamped from 2 s after the last send to 2 s before the last token)",
                ms(steady),
                "—",
                "n/a",
                "",
            )
        )
    worst = min(p["delivered_fraction"] for p in lat.values())
    rows.append(
        (
            "Relay latency",
            "tokens delivered (worst run)",
            f"{worst:.4f}",
            "1.0",
            verdict(worst == 1.0),
            "",
        )
    )
    cap = r.get("capacity")
    if cap:
        note = f" ({cap['note']})" if cap.get("note") else ""
        rows.append(
            (
                "Relay latency",
                "most streams per process at 25 tokens/s with p99 ≤ 100 ms",
                f"{cap['max_streams']} (first failing: {cap['first_failing'] or 'none'}){note}",
                "≥ 100",
                verdict(cap["max_streams"] >= 100),
                "< 100",
            )
        )
    return rows


def start_rows(r: dict[str, Any]) -> list[Row]:
    start = r.get("start_delay")
    if not start:
        return [("Start delay", "—", "not run", "", "n/a", "")]
    others = {"1": "≈ 45 ms", "20": "≈ 0.8 s", "100": "3.5–5 s"}
    rows: list[Row] = []
    for n, point in start.items():
        if n == "1":
            target, ok = "≤ 15 ms", point["max_ms"] <= 15
        elif n == "100":
            target, ok = "last ≤ 500 ms", point["max_ms"] <= 500
        else:
            target, ok = "—", None
        rows.append(
            (
                "Start delay",
                f"send → first token leaves the gateway, {n} simultaneous, p50 / max",
                f"{ms(point['p50_ms'])} / {ms(point['max_ms'])}",
                target,
                verdict(ok),
                others.get(n, ""),
            )
        )
    return rows


def cpu_rows(r: dict[str, Any]) -> list[Row]:
    cpu = r.get("cpu_per_token")
    if not cpu:
        return [("CPU per token", "—", "not run", "", "n/a", "")]
    rows: list[Row] = []
    for n, point in cpu.items():
        ratio = point["ratio"]
        rows.append(
            (
                "CPU per token",
                f"Daphne vs SDK-alone floor, {n} stream{'s' if n != '1' else ''}",
                f"{point['daphne_us_per_token']:.0f} vs {point['floor_us_per_token']:.0f} µs "
                f"= {ratio:.2f}×",
                "≤ 1.5×",
                verdict(ratio <= 1.5),
                "",
            )
        )
    return rows


def writes_rows(r: dict[str, Any]) -> list[Row]:
    writes = r.get("writes_per_reply")
    if not writes:
        return [("Writes per reply", "—", "not run", "", "n/a", "")]
    rows: list[Row] = []
    for turn in writes["turns"]:
        allowed = turn["allowed"]
        statements = ", ".join(
            f"{v} {k.split()[0]} {k.split()[1].removeprefix('conversations_')}"
            for k, v in turn["by_statement"].items()
        )
        rows.append(
            (
                "Writes per reply",
                f"SQL writes of one turn: {turn['kind']}, {turn['tokens']} tokens "
                f"({turn['reply_seconds']:.1f} s)",
                f"{turn['writes']} ({statements}); reply row alone "
                f"{1 + turn['by_statement'].get('UPDATE conversations_message', 0)}",
                f"≤ {allowed:.1f}",
                verdict(turn["writes"] <= allowed),
                "",
            )
        )
    return rows


def constant(counts: list[int]) -> bool:
    return len(set(counts)) == 1


def replay_rows(r: dict[str, Any]) -> list[Row]:
    replay = r.get("history_replay")
    if not replay:
        return [("History replay", "—", "not run", "", "n/a", "")]
    counts = [p["queries"] for p in replay.values()]
    result = ", ".join(f"{n}: {p['queries']} q / {p['ms']:.1f} ms" for n, p in replay.items())
    return [
        (
            "History replay",
            "load_history at 10 / 100 / 1,000 / 2,000 stored messages",
            result,
            "constant queries",
            verdict(constant(counts)),
            "",
        )
    ]


def long_rows(r: dict[str, Any]) -> list[Row]:
    long = r.get("long_conversation")
    if not long:
        return [("Long conversation", "—", "not run", "", "n/a", "")]
    sent, whole = long["bytes_sent"], long["whole_thread_bytes"]
    result = ", ".join(
        f"turn {n}: {int(sent[n]):,} B (thread {int(whole[n]):,} B)" for n in ("10", "100", "500")
    )
    # Flat: the largest request of the last hundred turns is no larger than those of the
    # hundred after the budget was reached (a cut leaves room, so requests saw-tooth).
    flat = long["max_bytes_turns_400_to_500"] <= long["max_bytes_turns_100_to_200"] * 1.05
    answered = long["failed_turns"] == 0 and long["refused_by_gateway"] == 0
    return [
        (
            "Long conversation",
            f"bytes sent upstream per turn, {long['window_tokens']:,}-token window, "
            f"{long['turns']} turns ({long['summaries_written']} summaries)",
            result,
            "flat once the budget is reached; every turn answered",
            verdict(flat and answered),
            "",
        )
    ]


def list_rows(r: dict[str, Any]) -> list[Row]:
    lists = r.get("lists")
    if not lists:
        return [("Lists and search", "—", "not run", "", "n/a", "")]
    rows: list[Row] = []
    counts = [p["list"]["queries"] for p in lists.values()]
    result = ", ".join(
        f"{int(n):,}: {p['list']['queries']} q / {p['list']['ms']:.1f} ms" for n, p in lists.items()
    )
    biggest = lists[max(lists, key=int)]
    rows.append(
        (
            "Lists and search",
            "conversation list `/`: queries, server time at 100 / 1,000 / 10,000 conversations",
            result,
            "constant queries; ≤ 50 ms at 10,000",
            verdict(constant(counts) and biggest["list"]["ms"] <= 50),
            "",
        )
    )
    for key, label in (
        ("search_rare", "a rare word (1% of messages)"),
        ("search_common", "a common word"),
    ):
        rows.append(search_row(lists, key, label))
    return rows


def search_row(lists: dict[str, Any], key: str, label: str) -> Row:
    points = [p[key] for p in lists.values()]
    skipped = next((s["skipped"] for s in points if "skipped" in s), None)
    if skipped:
        return ("Lists and search", f"search for {label}", f"skipped: {skipped}", "", "n/a", "")
    share = points[-1].get("share_of_messages")
    if share is not None:
        label = f"{label} (in {share:.0%} of messages)"
    result = ", ".join(
        f"{int(n):,}: {p[key]['queries']} q / {p[key]['ms']:.1f} ms" for n, p in lists.items()
    )
    return (
        "Lists and search",
        f"search `{points[0]['url']}?q=` for {label}: queries, server time",
        result,
        "constant queries; ≤ 50 ms at 10,000",
        verdict(constant([s["queries"] for s in points]) and points[-1]["ms"] <= 50),
        "",
    )


def open_rows(r: dict[str, Any]) -> list[Row]:
    opened = r.get("open_long")
    if not opened:
        return [("Long conversations", "—", "not run", "", "n/a", "")]
    page = ", ".join(
        f"{int(n):,}: {p['bytes'] / 1000:,.0f} KB / {p['ms']:.1f} ms / {p['queries']} q"
        for n, p in opened.items()
    )
    older = ", ".join(
        f"{int(n):,}: {p['older_page']['bytes'] / 1000:,.0f} KB / {p['older_page']['ms']:.1f} ms"
        for n, p in opened.items()
    )
    biggest = opened[max(opened, key=int)]
    flat = constant([p["queries"] for p in opened.values()])
    switched = [p for p in opened.values() if "switch" in p]
    switch_rows: list[Row] = []
    if switched:
        switch_rows.append(
            (
                "Long conversations",
                "switch to another version (`services.threads.switch`, in the database "
                "thread): server time (median), queries",
                ", ".join(
                    f"{int(n):,}: {p['switch']['ms']:.1f} ms / {p['switch']['queries']} q"
                    for n, p in opened.items()
                    if "switch" in p
                ),
                "—",
                "n/a",
                "",
            )
        )
    return [
        (
            "Long conversations",
            "open `/c/<id>/` at 100 / 1,000 / 10,000 messages (replies with a list and a "
            "code block): page size, server time (median), queries",
            page,
            "flat; ≤ 150 ms and ≤ 400 KB at 10,000",
            verdict(flat and biggest["ms"] <= 150 and biggest["bytes"] <= 400_000),
            "",
        ),
        (
            "Long conversations",
            "scrolling up: the fragment of the 40 messages before (`messages/?before=`)",
            older,
            "flat",
            verdict(constant([p["older_page"]["queries"] for p in opened.values()])),
            "",
        ),
        *switch_rows,
    ]


def idle_rows(r: dict[str, Any]) -> list[Row]:
    idle = r.get("idle_sockets")
    if not idle:
        return [("Idle sockets", "—", "not run", "", "n/a", "")]
    return [
        (
            "Idle sockets",
            "Daphne RSS with 0 open sockets (after one reply)",
            f"{idle['rss_0_sockets_mb']:.0f} MB",
            "—",
            "n/a",
            "≈ 1.1 GB idle",
        ),
        (
            "Idle sockets",
            f"Daphne RSS with {idle['sockets_open']:,} open idle sockets",
            f"{idle['rss_1000_sockets_mb']:.0f} MB ({idle['per_socket_kb']:.0f} kB per socket)",
            "≤ 150 MB",
            verdict(idle["rss_1000_sockets_mb"] <= 150),
            "",
        ),
    ]


def carries(point: dict[str, Any], streams: int) -> bool:
    """Every token and every `done` delivered within the single process's p99 target."""
    return (
        point.get("delivered_fraction") == 1.0
        and point.get("done") == streams
        and point.get("p99_ms") is not None
        and point["p99_ms"] <= 100.0
    )


def scale_out_rows(r: dict[str, Any]) -> list[Row]:
    scale = r.get("scale_out")
    if not scale:
        return [("Scale-out", "—", "not run", "", "n/a", "")]
    streams = scale["streams"]
    names = {
        "memory-1": "1 process, in-memory layer",
        "pubsub-2": "2 processes, Redis pub/sub layer",
        "core-2": "2 processes, Redis core layer",
    }
    memory = streams.get("memory-1", {})
    rows: list[Row] = []
    for name, points in streams.items():
        for n, point in points.items():
            base = memory.get(n) or {}
            ratio = (
                point["cpu_per_token_us"] / base["cpu_per_token_us"]
                if point.get("cpu_per_token_us") and base.get("cpu_per_token_us")
                else None
            )
            carried, held_by_one = carries(point, int(n)), carries(base, int(n))
            cpu = f"{point['cpu_per_token_us']:.0f} µs/token" if point["cpu_per_token_us"] else "—"
            if ratio is not None and name != "memory-1":
                cpu += f" ({ratio:.2f}× in-memory)"
            rows.append(
                (
                    "Scale-out",
                    f"{n} streams, {names.get(name, name)}: delivered, replies done, p99, "
                    "CPU per token (all processes)",
                    f"{point['delivered_fraction']:.3f}, {point['done']}/{n}, "
                    f"{ms(point['p99_ms'])}, {cpu}",
                    "carries what 1 in-memory process carries (all delivered and done, "
                    "p99 ≤ 100 ms); CPU ≤ 1.5×"
                    if name == "pubsub-2"
                    else "—",
                    verdict((carried or not held_by_one) and ratio is not None and ratio <= 1.5)
                    if name == "pubsub-2"
                    else "n/a",
                    "",
                )
            )
    for name, start in (scale.get("start_delay_ms") or {}).items():
        rows.append(
            (
                "Scale-out",
                f"start delay of 100 simultaneous sends, {names.get(name, name)}: p50 / last",
                f"{ms(start['p50'])} / {ms(start['max'])}",
                "—",
                "n/a",
                "",
            )
        )
    soak = scale.get("idle_soak") or {}
    if soak:
        rows.append(
            (
                "Scale-out",
                f"{soak['sockets']} idle sockets over 2 processes on Redis for "
                f"{soak['seconds']:.0f} s: closed by the server, answering afterwards",
                f"{soak['closed_by_server']} closed, {soak['answered']} answering",
                "none closed, all answer",
                verdict(soak["closed_by_server"] == 0 and soak["answered"] == soak["sockets"]),
                "",
            )
        )
    return rows


def render_rows(r: dict[str, Any]) -> list[Row]:
    render = r.get("live_render")
    if not render:
        return [("Live Markdown", "—", "not run", "", "n/a", "")]
    tokens = f"{render['tokens']:,}"
    rows: list[Row] = []
    for name, label in (("mixed", "a mixed Markdown reply"), ("code", "one open code block")):
        point = render[name]
        end, start = point["frames_at_end"], point["frames_at_start"]
        full = point["full_render_at_end"]
        rows.append(
            (
                "Live Markdown",
                f"browser, {label} of {tokens} tokens, a token per frame: time per rendered "
                f"frame (render + style + layout) over the last {render['tail_tokens']:,} "
                f"tokens, p50 / p95 / max (first {render['tail_tokens']:,}: p50 "
                f"{ms(start['p50_ms'])})",
                f"{ms(end['p50_ms'])} / {ms(end['p95_ms'])} / {ms(end['max_ms'])}",
                "p95 ≤ 8 ms (half a 60 Hz frame)" if name == "mixed" else "—",
                verdict(end["p95_ms"] <= 8.0) if name == "mixed" else "n/a",
                "",
            )
        )
        rows.append(
            (
                "Live Markdown",
                f"{label}: the whole text rendered again at the end instead (median)",
                ms(full["p50_ms"]),
                "—",
                "n/a",
                "",
            )
        )
    return rows


def rows(results: dict[str, Any]) -> list[Row]:
    return [
        *latency_rows(results),
        *start_rows(results),
        *cpu_rows(results),
        *writes_rows(results),
        *replay_rows(results),
        *long_rows(results),
        *list_rows(results),
        *open_rows(results),
        *idle_rows(results),
        *scale_out_rows(results),
        *render_rows(results),
    ]


def markdown(table: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table]
    return "\n".join(lines)


def chart_latency(results: dict[str, Any]) -> None:
    points = (results.get("capacity") or {}).get("points") or results.get("relay_latency") or {}
    p50 = [(float(n), p["p50_ms"]) for n, p in points.items() if p["p50_ms"]]
    p99 = [(float(n), p["p99_ms"]) for n, p in points.items() if p["p99_ms"]]
    LATENCY_SVG.write_text(
        svg.line_chart(
            "Added latency per token against concurrent streams (25 tokens/s each)",
            "concurrent streams on one Daphne process",
            "added latency (ms, log scale)",
            [svg.Series("p50", p50), svg.Series("p99", p99)],
            [svg.Guide("target p99 at 100 streams: 100 ms", 100.0)],
        )
    )


def chart_cpu(results: dict[str, Any]) -> None:
    cpu = results.get("cpu_per_token") or {}
    groups = list(cpu)
    daphne = [(g, cpu[n]["daphne_us_per_token"] or 0.0) for g, n in enumerate(groups)]
    floor = [(g, cpu[n]["floor_us_per_token"] or 0.0) for g, n in enumerate(groups)]
    CPU_SVG.write_text(
        svg.bar_chart(
            "CPU per delivered token: Daphne against the SDK-alone floor",
            "CPU µs per token",
            groups,
            [svg.Series("Daphne (whole app)", daphne), svg.Series("SDK alone (floor)", floor)],
            [1.5 * y for _, y in floor],
        )
    )


def memory_gb(meminfo_value: str) -> str:
    """'24684096 kB' (from /proc/meminfo) as '24.7 GB'."""
    try:
        return f"{int(meminfo_value.split()[0]) * 1024 / 1e9:.1f} GB"
    except (ValueError, IndexError):
        return meminfo_value


# Result keys whose figures may come from a run of their own (`<key>_measured` in
# bench/results.json), with the name of their rows in the table.
MEASURED_APART = {"live_render": "Live Markdown"}


def header(results: dict[str, Any]) -> str:
    m = results["machine"]
    code = results.get("code") or {}
    state = f"commit `{code.get('commit', '?')[:10]}`"
    if code.get("uncommitted"):
        state += f" plus {len(code['uncommitted'])} uncommitted app file(s)"
    if code.get("changed_during_run"):
        state += (
            " (**app code changed during the run**: " + ", ".join(code["changed_during_run"]) + ")"
        )
    partial = results.get("partial")
    if partial:
        state += (
            f"; this run measured only {', '.join(partial['scenarios'])}, the other rows are "
            f"from the full run of {partial['others_from']}"
        )
    # Rows measured in a run of their own (a scenario alone on a branch, before a merge): a
    # later partial run keeps them, and this says when and on what they were measured.
    for key, rows_name in MEASURED_APART.items():
        apart = results.get(f"{key}_measured")
        if apart and key in results:
            state += (
                f", except the {rows_name} rows, measured alone at {apart['started_at']} on "
                f"commit `{apart.get('code', {}).get('commit', '?')[:10]}`"
            )
    return (
        f"Last run: {results['started_at']}, {state}, {results['runtime_seconds']:.0f} s, on "
        f"**{m['cpu_count']} cores** ({m['cpu_model']}), {memory_gb(m['memory_total'])} RAM, "
        f"Python {m['python']}, DEBUG={m['debug'] or '0'}. Every figure, including each "
        "repetition, is in [`bench/results.json`](../bench/results.json)."
    )


def update_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n{START}\n{END}\n"
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    DOC.write_text(f"{before}{START}\n{block}\n{END}{after}")


def write(results: dict[str, Any]) -> str:
    """Write the charts and the doc's results block; return the table for the console."""
    table = markdown(rows(results))
    chart_latency(results)
    chart_cpu(results)
    errors = results.get("errors") or {}
    failed = f"\n\nScenarios that failed in this run: {', '.join(errors)}." if errors else ""
    update_doc(f"{header(results)}\n\n{table}{failed}")
    return table
