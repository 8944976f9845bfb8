"""Runs the Python client against nats-py, the same scenarios in the same shape, each round ACB then
nats-py (the other way round every second round), and prints the medians and ranges; with
`--markdown FILE` it rewrites the section "Python client vs nats-py" of FILE and nothing else.

Each scenario is two processes of its own (sender and receiver, or requester and responder), started
fresh for every run: `p2p.py`, `request_reply.py`, `stream.py` in this folder. An ACB role gets the
token of its agent, in a tenant of the run, from `acb token issue` (signed with ACB_TOKEN_SECRET).
`scripts/bench-python.sh` starts the servers and calls this.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import AGENTS, STREAM_BYTES

HERE = Path(__file__).resolve().parent
#: `acb token issue` comes from the release build of this repository unless told otherwise.
ACB_CLI = HERE.parents[2] / ".build" / "release" / "acb"
BEGIN = "<!-- python-bench:begin (written by scripts/bench-python.sh --write; edit that script, not this) -->"
END = "<!-- python-bench:end -->"
SYSTEMS = ("acb", "nats")
#: The table's typography, as in the rest of BENCHMARKS.md (escaped: ruff's RUF001 flags them as look-alikes).
TIMES, DASH, MINUS = "\N{MULTIPLICATION SIGN}", "\N{EN DASH}", "\N{MINUS SIGN}"
READY_TIMEOUT = 30.0
RUN_TIMEOUT = 600.0

Result = dict[str, Any]


@dataclass
class Figure:
    """One measured quantity of a scenario, with how it is judged."""

    name: str
    compute: Callable[[Result, Result], float]
    fmt: str = "{:,.0f}"
    target: str = ""
    #: Whether the target holds, given ACB's median and nats-py's median.
    met: Callable[[float, float], bool] | None = None


@dataclass
class Scenario:
    """A scenario: its two roles, their program and arguments, its figures, and the samples taken."""

    key: str
    title: str
    program: str
    #: The role measured from its start (sender, requester) and the one started first.
    active: str
    passive: str
    arguments: list[str]
    figures: list[Figure]
    #: Whether the passive role reports figures too (a receiver does, a responder does not).
    passive_reports: bool = True
    samples: dict[str, list[dict[str, float]]] = field(default_factory=lambda: {s: [] for s in SYSTEMS})


def scenarios(options: argparse.Namespace) -> list[Scenario]:
    count, rr_count, size = options.p2p_count, options.rr_count, options.stream_bytes
    mib = size / 1024 / 1024
    return [
        Scenario(
            "p2p",
            f"p2p, {count:,} {TIMES} 256 B, flush every 1,000",
            "p2p.py",
            "send",
            "receive",
            ["--count", str(count)],
            [
                Figure(
                    "messages/s",
                    lambda a, p: count / ((p["end"] - a["start"]) / 1e9),
                    target=f"≥ 1.0{TIMES} nats-py",
                    met=lambda acb, nats: acb >= nats,
                ),
                Figure("sender CPU µs/message", lambda a, p: a["cpu"] / count * 1e6, "{:.1f}"),
                Figure("receiver CPU µs/message", lambda a, p: p["cpu"] / count * 1e6, "{:.1f}"),
            ],
        ),
        Scenario(
            "rr",
            f"request/reply, 1 requester, {rr_count:,} sequential (after {options.rr_warmup:,})",
            "request_reply.py",
            "request",
            "respond",
            ["--count", str(rr_count), "--warmup", str(options.rr_warmup)],
            [
                Figure("requests/s", lambda a, p: a["requests"] / ((a["end"] - a["start"]) / 1e9)),
                Figure(
                    "p50 µs",
                    lambda a, p: a["p50_us"],
                    "{:.0f}",
                    target=f"≤ 1.0{TIMES} nats-py",
                    met=lambda acb, nats: acb <= nats,
                ),
                Figure("p99 µs", lambda a, p: a["p99_us"], "{:.0f}"),
                Figure("requester CPU µs/request", lambda a, p: a["cpu"] / a["requests"] * 1e6, "{:.0f}"),
            ],
            passive_reports=False,
        ),
        Scenario(
            "stream",
            f"stream, {mib:,.0f} MiB, sender → receiver's verified file",
            "stream.py",
            "send",
            "receive",
            ["--bytes", str(size), "--dir", options.dir],
            [
                Figure(
                    "MB/s",
                    lambda a, p: size / ((p["end"] - a["start"]) / 1e9) / 1e6,
                    target="ACB ≥ 100 MB/s",
                    met=lambda acb, nats: acb >= 100,
                ),
                Figure("sender done after, s", lambda a, p: (a["end"] - a["start"]) / 1e9, "{:.2f}"),
                Figure("receiver has the file after, s", lambda a, p: (p["end"] - a["start"]) / 1e9, "{:.2f}"),
                Figure("sender CPU s", lambda a, p: a["cpu"], "{:.2f}"),
                Figure("receiver CPU s", lambda a, p: p["cpu"], "{:.2f}"),
            ],
        ),
    ]


# MARK: running one measurement


class Role:
    """A role's process, speaking JSON lines on its stdout."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name

    @classmethod
    async def start(cls, program: str, system: str, role: str, server: str, tenant: str, extra: list[str]) -> Role:
        command = [sys.executable, str(HERE / program), system, role, "--server", server, "--tenant", tenant, *extra]
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        return cls(process, f"{program} {system} {role}")

    async def expect(self, event: str, timeout: float) -> Result:
        assert self.process.stdout is not None
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            if not line:
                code = await self.process.wait()
                raise RuntimeError(f"{self.name} ended (status {code}) before '{event}'")
            message: Result = json.loads(line)
            if message.get("event") == event:
                return message

    async def finish(self) -> None:
        """Closes its stdin (a serving role ends then) and waits for it to exit."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def issue_token(acb_cli: str, agent: str, tenant: str) -> str:
    """An access token of `agent` in `tenant`, as `acb token issue` prints it."""
    process = await asyncio.create_subprocess_exec(
        acb_cli, "token", "issue", "--agent", agent, "--tenant", tenant, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{acb_cli} token issue ended with status {process.returncode}")
    return output.decode().strip()


async def measure(
    scenario: Scenario, system: str, server: str, profile_dir: str | None, acb_cli: str
) -> dict[str, float]:
    tenant = f"pybench-{uuid.uuid4().hex[:8]}"

    async def start(role: str) -> Role:
        extra = list(scenario.arguments)
        if system == "acb":
            extra += ["--token", await issue_token(acb_cli, AGENTS[role], tenant)]
        if profile_dir is not None:
            extra += ["--profile", f"{profile_dir}/{scenario.key}-{system}-{role}.prof"]
        return await Role.start(scenario.program, system, role, server, tenant, extra)

    passive = await start(scenario.passive)
    active: Role | None = None
    try:
        await passive.expect("ready", READY_TIMEOUT)
        active = await start(scenario.active)
        await active.expect("ready", READY_TIMEOUT)
        active_result = await active.expect("result", RUN_TIMEOUT)
        passive_result = await passive.expect("result", RUN_TIMEOUT) if scenario.passive_reports else {}
    finally:
        for role in (active, passive):
            if role is not None:
                await role.finish()
    return {figure.name: figure.compute(active_result, passive_result) for figure in scenario.figures}


# MARK: the report


def spread(values: list[float], fmt: str) -> str:
    median = statistics.median(values)
    if len(values) == 1:
        return fmt.format(median)
    return f"{fmt.format(median)} ({fmt.format(min(values))}{DASH}{fmt.format(max(values))})"


def table(runs: list[Scenario]) -> list[str]:
    lines = [
        "| scenario | figure | ACB, Python client | nats-py | ACB / nats-py | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario in runs:
        for figure in scenario.figures:
            values = {s: [sample[figure.name] for sample in scenario.samples[s]] for s in SYSTEMS}
            if not values["acb"] or not values["nats"]:
                continue
            # The ratio is always ACB / nats-py, for rates and costs alike.
            acb, nats = statistics.median(values["acb"]), statistics.median(values["nats"])
            ratio = f"{acb / nats:.2f}{TIMES}" if nats else DASH
            met = "" if figure.met is None else ("yes" if figure.met(acb, nats) else "**no**")
            lines.append(
                f"| {scenario.title} | {figure.name} | {spread(values['acb'], figure.fmt)} | "
                f"{spread(values['nats'], figure.fmt)} | {ratio} | {figure.target} | {met} |"
            )
    return lines


def machine() -> str:
    model = "unknown CPU"
    memory = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB"
                break
    system = platform.platform()
    try:
        with open("/etc/os-release") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    system = line.split("=", 1)[1].strip().strip('"') + ", Linux " + platform.release()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores{memory}, {system}"


def widest_spread(runs: list[Scenario]) -> float:
    """The largest ratio of the fastest run to the slowest, over the first figure (the rate) of each
    scenario and system: how much the machine's other work moved the figures."""
    spreads = [1.0]
    for scenario in runs:
        name = scenario.figures[0].name
        for system in SYSTEMS:
            values = [sample[name] for sample in scenario.samples[system]]
            if values and min(values) > 0:
                spreads.append(max(values) / min(values))
    return max(spreads)


def section(runs: list[Scenario], options: argparse.Namespace, loads: list[float]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    versions = ", ".join([f"Python {platform.python_version()}", *options.version])
    body = [
        BEGIN,
        "## Python client vs nats-py",
        "",
        f"Measured {stamp} on {machine()}. {versions}. Both servers and the two client processes of a run share "
        f"the machine; {options.rounds} runs of each scenario for each system, ACB and nats-py in turn (the "
        "order swapped every second run), each run with fresh processes; the figure is the median, the "
        f"range (min{DASH}max) in brackets. The machine was not reserved: load average (1 min) while it ran "
        f"{min(loads):.2f}{DASH}{max(loads):.2f}, and the fastest run of a scenario was up to "
        f"{widest_spread(runs):.1f}{TIMES} the slowest; read the ranges, not only the medians.",
        "",
        "Reproduce with:",
        "",
        "```",
        options.command,
        "```",
        "",
        *table(runs),
        "",
        "The shape, the same for both clients (clients/python/bench/):",
        "",
        "- **p2p**: one sender process, one receiver process, one connection each. ACB: "
        "`await client.send(agent, payload, confirm=False)`, `await client.flush()` every 1,000 (a PING that "
        "waits until the bus settled every send before it); receiver iterates `client.deliveries()` (each "
        "delivery acknowledged when the next is asked for, the ACKs coalesced per event-loop turn). nats-py: "
        "`publish`, `flush()` every 1,000; the receiver counts in a subscription callback. Rate: messages / "
        f"(receiver's last receipt {MINUS} sender's first send), both on the machine's monotonic clock. CPU: each "
        "process's own CPU time over the run, per message.",
        "- **request/reply**: one requester asking one at a time (`client.request(agent, payload)`; nats-py "
        "`request(subject, payload)`), one responder echoing the 256-byte payload (`client.serve(handler)`; "
        "nats-py a subscription callback calling `msg.respond`). Latency is the requester's, call to answer.",
        "- **stream**: ACB's `client.upload(agent, data)` (the client hashes the data, sends 1 MiB chunks a "
        "few ahead of what the bus stored; the bus spools it to disk, verifies it, then delivers it) and "
        "`client.streams()` (written to a file, size and SHA-256 checked). nats-py is a reference only: the "
        "sender hashes the data, publishes its size and SHA-256, then 1,000,000-byte messages and flushes; the "
        "receiver writes them to a file, hashing as it goes. NATS core stores nothing, has no flow control "
        "and nothing to resume from; ACB's stream is store-and-forward, so the receiver starts after the "
        f"upload ends. Rate: MB (10⁶ bytes) / (receiver's verified file {MINUS} sender's start, hashing included).",
        "- Both clients run on asyncio's default event loop, Python code only (no uvloop); each role is a "
        "process of its own, started fresh for each run; the servers run on 127.0.0.1. `acb serve` runs with "
        "its defaults but `--rate-limit 0`: the per-agent limit (100,000 commands/s, burst 200,000) is below "
        "what one Python sender reaches, and nats-server has none. nats-server runs as it ships.",
        END,
    ]
    return "\n".join(body)


def rewrite(path: str, text: str) -> None:
    """Replaces the part between BEGIN and END, or appends it: the rest of the file is kept as it is."""
    original = Path(path).read_text()
    start, end = original.find(BEGIN), original.find(END)
    if start >= 0 and end > start:
        updated = original[:start] + text + original[end + len(END) :]
    else:
        updated = original.rstrip("\n") + "\n\n" + text + "\n"
    Path(path).write_text(updated)


# MARK: main


async def main_async(options: argparse.Namespace) -> int:
    servers = {"acb": options.acb, "nats": options.nats}
    chosen = set(options.scenarios.split(","))
    runs = [scenario for scenario in scenarios(options) if scenario.key in chosen]
    loads: list[float] = []
    for scenario in runs:
        for round_ in range(options.rounds):
            order = SYSTEMS if round_ % 2 == 0 else tuple(reversed(SYSTEMS))
            for system in order:
                loads.append(os.getloadavg()[0])
                figures = await measure(scenario, system, servers[system], options.profile_dir, options.acb_cli)
                scenario.samples[system].append(figures)
                shown = ", ".join(
                    f"{f.name} {f.fmt.format(figures[f.name])}" for f in scenario.figures if f.name in figures
                )
                print(f"{scenario.key} run {round_ + 1} {system:4}: {shown}", flush=True)
    loads.append(os.getloadavg()[0])
    print()
    print("\n".join(table(runs)))
    if options.json:
        Path(options.json).write_text(
            json.dumps({s.key: {"title": s.title, "samples": s.samples} for s in runs}, indent=2) + "\n"
        )
    if options.markdown:
        rewrite(options.markdown, section(runs, options, loads))
        print(f"\nwrote the section 'Python client vs nats-py' of {options.markdown}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--acb", required=True, help="host:port of acb serve")
    parser.add_argument("--nats", required=True, help="host:port of nats-server")
    parser.add_argument("--scenarios", default="p2p,rr,stream", help="comma-separated: p2p, rr, stream")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--p2p-count", type=int, default=400_000)
    parser.add_argument("--rr-count", type=int, default=5_000)
    parser.add_argument("--rr-warmup", type=int, default=500)
    parser.add_argument("--stream-bytes", type=int, default=STREAM_BYTES)
    parser.add_argument("--dir", default="/tmp", help="where stream receivers write their files")
    parser.add_argument("--profile-dir", help="run every role under cProfile, stats written here")
    parser.add_argument("--acb-cli", default=str(ACB_CLI), help="the acb executable that issues the roles' tokens")
    parser.add_argument("--json", help="write every sample to this file")
    parser.add_argument("--markdown", help="rewrite the section 'Python client vs nats-py' of this file")
    parser.add_argument("--command", default="scripts/bench-python.sh --write", help="the command recorded")
    parser.add_argument("--version", action="append", default=[], help="name=version for the report")
    options = parser.parse_args()
    if "ACB_TOKEN_SECRET" not in os.environ:
        parser.error("ACB_TOKEN_SECRET must hold the bus's token secret")
    sys.exit(asyncio.run(main_async(options)))


if __name__ == "__main__":
    main()
