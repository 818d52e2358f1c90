#!/usr/bin/env python3
"""Operator CLI for ctxd; standard library only, runs with any python3.

    python3 clients/ctl.py [--socket PATH] status [--json]
    python3 clients/ctl.py health
    python3 clients/ctl.py analyze IMAGE --conversation ID [--scene S] [--wait best] [--json]
    python3 clients/ctl.py events CONVERSATION [--limit N] [--before-id ID] [--json]
    python3 clients/ctl.py spend [--json]
    python3 clients/ctl.py top [--interval SECONDS]

The socket is --socket, else $CTXD_SOCKET, else ``socket.path`` of
./config.yaml, else var/ctxd.sock. Exit status of ``status`` and ``health``:
0 serving, 1 draining (or starting), 2 unreachable; other commands: 0 ok,
1 error reply, 2 unreachable; 64 a usage error (EX_USAGE). ``--help`` says
the same. Output cut short by its reader (``| head``) ends quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from clients.client import Client, ConnectionClosed, RpcError
    from clients.top import seconds, top
else:  # run as a script: client.py sits next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from client import Client, ConnectionClosed, RpcError
    from top import seconds, top

EXIT_OK, EXIT_NOT_SERVING, EXIT_UNREACHABLE = 0, 1, 2
EXIT_USAGE = 64  # EX_USAGE of sysexits.h: 2 would read as "unreachable"

EPILOG = """\
socket: --socket, else $CTXD_SOCKET, else socket.path of ./config.yaml,
        else var/ctxd.sock
exit status:
  status, health   0 serving, 1 draining or starting, 2 unreachable
  other commands   0 ok, 1 error reply, 2 unreachable
  64               a usage error (an unknown command or option, a missing argument)
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits EX_USAGE (64), not 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def socket_from_config(config: Path) -> str | None:
    """``socket.path`` from a ctxd config file, read without a YAML library."""
    try:
        lines = config.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    in_socket = False
    for line in lines:
        if re.match(r"^socket:\s*(#.*)?$", line):
            in_socket = True
        elif line[:1] not in ("", " ", "\t", "#"):
            in_socket = False
        elif in_socket:
            match = re.match(r"^\s+path:\s*(['\"]?)(.*?)\1\s*(#.*)?$", line)
            if match and match.group(2):
                path = Path(match.group(2))
                return str(path if path.is_absolute() else config.resolve().parent / path)
    return None


def default_socket() -> str:
    return (
        os.environ.get("CTXD_SOCKET")
        or socket_from_config(Path("config.yaml"))
        or str(Path("var/ctxd.sock").resolve())
    )


# ------------------------------------------------------------------ format --


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right or set()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


def format_status(s: dict[str, Any]) -> str:
    lines = [f"ctxd {s['version']}  pid {s['pid']}  {s['state']}  up {_duration(s['uptime_s'])}"]
    if s["state"] == "draining" and s["drain"]["deadline_s"] is not None:
        lines.append(f"draining: {s['drain']['deadline_s']:.0f}s until the rest is cancelled")
    bg = s["background"]
    by = ", ".join(f"{k} {v}" for k, v in sorted(bg["by_strategy"].items()))
    lines.append(
        f"connections {s['connections']}   in flight {s['in_flight']}   "
        f"background {bg['count']}/{bg['max']}" + (f" ({by})" if by else "")
    )
    st = s["store"]
    lines.append(
        f"store  {st['path']}  {st['events']:,} events  "
        f"{_bytes(st['used_bytes'])} used of {_bytes(st['map_size'])}"
    )
    c = s["cache"]
    lookups = c["hits"] + c["misses"]
    rate = f"{100 * c['hits'] / lookups:.1f}%" if lookups else "-"
    lines.append(
        f"cache  hits {c['hits']}  misses {c['misses']}  hit rate {rate}  "
        f"coalesced {c['coalesced']}  upgrades {c.get('upgrades', 0)}"
    )
    f = s.get("fleet")
    if f:  # docs/fleet.md
        rtt = "-" if f["rtt_ms"] is None else f"{f['rtt_ms']:.2f} ms"
        age = "" if f["outbox_age_s"] is None else f" (oldest {_duration(f['outbox_age_s'])})"
        lines.append(
            f"fleet  {f['host_id']} on {f['server']}  {f['state']}  rtt {rtt}  "
            f"outbox {f['outbox']}{age}  published {f['published']}  "
            f"publish errors {f['publish_errors']}  fleet hits {f['hits']} of "
            f"{f['lookups']} lookups ({f['lookup_errors']} failed)  leases won "
            f"{f.get('leases_won', 0)} waited {f.get('leases_waited', 0)} taken over "
            f"{f.get('leases_taken_over', 0)} lost {f.get('leases_lost', 0)} "
            f"retaken {f.get('leases_retaken', 0)}"
        )
    header = ["strategy", "model", "rank", "calls", "wins", "invalid", "errors", "timeouts"]
    header += ["cancelled", "p50 ms", "p95 ms", "p99 ms"]
    rows = []
    for name, v in sorted(s["strategies"].items(), key=lambda kv: -kv[1]["rank"]):
        lat = v["latency_ms"]
        counts = [v[k] for k in ("rank", "calls", "wins", "invalid", "errors", "timeouts")]
        latency = [_ms(lat["p50"]), _ms(lat["p95"]), _ms(lat["p99"])]
        rows.append([name, v["model"], *counts, v["cancelled"], *latency])
    if rows:
        lines += ["", table(header, rows, right=set(range(2, len(header))))]
    idle = [
        f"{name} ({v.get('rest_reason') or 'not configured'})"
        for name, v in sorted(s["strategies"].items())
        if v.get("state") == "not_configured"
    ]
    if idle:
        lines += ["", "not configured, left out of races: " + ", ".join(idle)]
    return "\n".join(lines)


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _spent(f: dict[str, Any]) -> str:
    """A period's USD: "unknown" when no call's cost is known but some
    call's is not (never a guessed 0), ">=" when only part of it is known."""
    usd, known, unknown = f["usd"], f.get("cost_known", 0), f["cost_unknown"]
    if unknown and not known and not usd:
        return "unknown"
    return (">=" if unknown else "") + _usd(usd)


def format_spend(s: dict[str, Any]) -> str:
    """The ``spend`` answer as a table: today and this month (UTC) by strategy,
    with the budget left ("-": no such budget)."""
    header = ["strategy", "period", "calls", "tokens", "USD", "unknown", "cancelled", "refused"]
    header += ["USD left today", "calls left/min"]
    rows = []
    for name, v in sorted(s["strategies"].items()):
        budget = v.get("budget") or {}
        usd_left = _usd(budget.get("usd_left_today"))
        calls_left = budget.get("calls_left_this_minute")
        left = [usd_left, "-" if calls_left is None else str(calls_left)]
        if budget.get("exhausted") == "usd_per_day":
            left[0] += " (at budget)"
        elif budget.get("exhausted") == "calls_per_minute":
            left[1] += " (at budget)"
        for period, label in (("today", s["day"]), ("month", s["month"])):
            f = v[period]
            figures = [str(f["calls"]), f"{f['total_tokens']:,}", _spent(f)]
            figures += [str(f[k]) for k in ("cost_unknown", "cancelled_after_send")]
            figures.append(str(f["budget_exhausted"]))
            first = period == "today"
            rows.append([name if first else "", label, *figures, *(left if first else ["", ""])])
    if not rows:
        return "no strategies"
    notes = (
        "USD: the calls whose cost is known (the provider's, else the config price; "
        "'>=' when some are not, 'unknown' when none is);\nunknown: calls of unknown cost; "
        "cancelled: cancelled once the request was out "
        "(may be billed); refused: not started, at the budget."
    )
    return table(header, rows, right=set(range(2, len(header)))) + "\n\n" + notes


def format_analysis(r: dict[str, Any], conversation: str) -> str:
    p = r["provenance"]
    step = r["result"]
    origin = "cached" if p["cached"] else "fresh"
    who = {k: "-" if v is None else v for k, v in step["participants"].items()}
    lines = [
        f"conversation {conversation}  [{p['strategy']} | {p['model']} | {origin}, "
        f"{p['latency_ms']:.0f} ms]",
        f"participants  user={who.get('user', '-')}  talker={who.get('talker', '-')}",
        f"layout        left={step['layout']['left']}  right={step['layout']['right']}",
        "",
    ]
    width = max([len(m["speaker"]) for m in step["conversation"]] or [0])
    for message in step["conversation"]:
        lines.append(f"  {message['speaker'].rjust(width)}: {message['text']}")
    if step.get("summary"):
        lines += ["", f"summary: {step['summary']}"]
    if r.get("pending"):
        lines += ["", "still running in the background: " + ", ".join(r["pending"])]
    return "\n".join(lines)


def format_events(events: list[dict[str, Any]]) -> str:
    if not events:
        return "no events"
    now = time.time()
    rows = [
        [
            str(e["id"]),
            _duration(max(0.0, now - e["ts"])) + " ago",
            e["category"],
            e["strategy"],
            e["model"],
            e["scene"] or "-",
            e["resource"] if len(e["resource"]) <= 30 else e["resource"][:27] + "...",
        ]
        for e in events
    ]
    header = ["id", "age", "category", "strategy", "model", "scene", "resource"]
    return table(header, rows, right={0})


# ---------------------------------------------------------------- commands --


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="ctl.py",
        description="Operate a ctxd daemon.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--socket",
        default=None,
        help="daemon socket (default: $CTXD_SOCKET, else socket.path of ./config.yaml, "
        "else var/ctxd.sock)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    sub = parser.add_subparsers(dest="command", required=True)
    p_status = sub.add_parser("status", help="state, load, cache and strategy figures")
    p_status.add_argument("--json", action="store_true")
    sub.add_parser("health", help="is the daemon serving?")
    p_analyze = sub.add_parser("analyze", help="extract the conversation of a screenshot")
    p_analyze.add_argument("image")
    p_analyze.add_argument("--conversation", required=True)
    p_analyze.add_argument("--scene", default="")
    p_analyze.add_argument("--wait", choices=["first", "best"], default="first")
    p_analyze.add_argument("--refresh", action="store_true")
    p_analyze.add_argument("--json", action="store_true")
    p_events = sub.add_parser("events", help="stored events of a conversation, newest first")
    p_events.add_argument("conversation")
    p_events.add_argument(
        "--limit",
        type=int,
        default=50,
        help="at most N events (default 50, as events.list; pages through the daemon's)",
    )
    p_events.add_argument("--before-id", type=int, help="only events with an id below this one")
    p_events.add_argument("--json", action="store_true")
    p_spend = sub.add_parser("spend", help="usage, USD and budget left by strategy (UTC)")
    p_spend.add_argument("--json", action="store_true")
    p_top = sub.add_parser("top", help="status live, with rates per second (Ctrl-C quits)")
    p_top.add_argument("--interval", type=seconds, default=1.0, help="seconds between frames")
    args = parser.parse_args(argv)

    path = args.socket or default_socket()
    try:
        client = Client(path, timeout=args.timeout, connect_timeout=min(args.timeout, 5.0))
    except OSError as exc:
        print(f"ctxd unreachable at {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    with client:
        try:
            code = run(client, args)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
        except BrokenPipeError:  # ``top``'s reader went away: it stops there
            reader_gone()
            return EXIT_OK
        except RpcError as exc:
            detail = f" {json.dumps(exc.data, ensure_ascii=False)}" if exc.data else ""
            print(f"error {exc.code}: {exc.message}{detail}", file=sys.stderr)
            return 1
        except (ConnectionClosed, TimeoutError) as exc:
            print(f"ctxd unreachable at {path}: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE


def list_events(
    client: Client, conversation: str, limit: int, before_id: int | None
) -> list[dict[str, Any]]:
    """Up to ``limit`` events, newest first: ``events.list`` answers at most
    1000 events and what fits in one message, so follow ``next_before_id``."""
    items: list[dict[str, Any]] = []
    while len(items) < limit:
        params: dict[str, Any] = {
            "session_id": conversation,
            "limit": min(limit - len(items), 1000),
        }
        if before_id is not None:
            params["before_id"] = before_id
        page = client.call("events.list", params)
        items += page["events"]
        before_id = page.get("next_before_id")
        if before_id is None:
            break
    return items


def reader_gone() -> None:
    """The reader stopped reading (``| head``): the rest of the output goes
    nowhere, quietly (nothing left to flush at exit, which would raise again)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def emit(text: str) -> None:
    """Print ``text``; a reader that went away ends the output, not the
    command: its exit status stays the command's (``status`` of a draining
    daemon is 1 even under ``| head``)."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        reader_gone()


def run(client: Client, args: argparse.Namespace) -> int:
    if args.command == "status":
        status = client.call("status")
        emit(json.dumps(status, indent=2) if args.json else format_status(status))
        return EXIT_OK if status["state"] == "serving" else EXIT_NOT_SERVING
    if args.command == "top":  # clients/top.py
        return top(client, args.interval)
    if args.command == "spend":
        spend = client.call("spend")
        emit(json.dumps(spend, indent=2) if args.json else format_spend(spend))
        return EXIT_OK
    if args.command == "health":
        health = client.call("health")
        emit(health["state"])
        return EXIT_OK if health["ok"] and health["state"] == "serving" else EXIT_NOT_SERVING
    if args.command == "analyze":
        params = {
            "conversation_id": args.conversation,
            # the daemon's working directory is not the caller's: send it absolute
            "image": {"path": os.path.abspath(args.image)},
            "scene": args.scene,
            "wait": args.wait,
            "refresh": args.refresh,
        }
        result = client.call("analyze", params, timeout=max(args.timeout, 120.0))
        out = json.dumps(result, indent=2, ensure_ascii=False) if args.json else None
        emit(out or format_analysis(result, args.conversation))
        return EXIT_OK
    items = list_events(client, args.conversation, args.limit, args.before_id)
    emit(json.dumps(items, indent=2, ensure_ascii=False) if args.json else format_events(items))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
