"""Rich renderables for a deployment snapshot, shared by `up` (Live) and `status`.

Why only snapshot data: the ui must draw the same picture whether the snapshot came from a
live supervisor over its socket or was rebuilt from the journal after a crash, so it reads
the typed DeploymentSnapshot (supervisor/snapshot.py) and imports nothing from the engine.

Readability rules: one row per instance; every cell is one line (long values are cut with an
ellipsis, never wrapped); when there are more instances than rows on screen, the rows that
need attention (anything not `running`) are kept and the rest summarised in one line.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from golem_deploy.supervisor.snapshot import (
    DeploymentSnapshot,
    InstanceView,
    instances,
    parse_iso,
    state_counts,
)

STATE_STYLES = {
    "pending": "dim",
    "starting": "yellow",
    "running": "green",
    "stopping": "magenta",
    "terminated": "red",
    "unresponsive": "bold red",
}
DEPLOYMENT_STYLES = {
    "starting": "yellow",
    "running": "green",
    "degraded": "bold yellow",
    "failed": "bold red",
    "stopping": "magenta",
    "stopped": "dim",
    "gone": "bold red",
}
STATE_ORDER = ("running", "starting", "pending", "stopping", "unresponsive", "terminated")


def duration(seconds: float | None) -> str:
    """Compact human duration: 45s, 3m05s, 2h07m, 3d04h. '-' when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def amount(value: object, places: int = 4) -> str:
    """A decimal string shortened for a cell: '0.012345' -> '0.0123'; '-' when unknown."""
    if value is None:
        return "-"
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if not number.is_finite():
        return str(value)
    text = format(number.quantize(Decimal(1).scaleb(-places)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def state_text(instance: InstanceView) -> str:
    """The state, with the image download while a starting instance waits for it:
    "starting (image 45 %, 12 MB/s)"."""
    state = instance.state or "?"
    got = instance.download
    if got is None or state != "starting":
        return state
    rate = f"{got.bytes_per_s / 1e6:.1f} MB/s" if got.bytes_per_s else ""
    if got.total:
        done = f"{min(100, 100 * got.done // got.total)} %"
    else:
        done = f"{got.done / 1e6:.1f} MB"
    return f"starting (image {done}{', ' + rate if rate else ''})"


def _uptime(instance: InstanceView, now: float) -> str:
    if instance.state != "running":
        return "-"
    started = parse_iso(instance.started_at)
    return duration(now - started) if started is not None else "-"


def _expires(instance: InstanceView, now: float) -> str:
    expires = parse_iso(instance.expires_at)
    if expires is None or instance.state in ("terminated", "pending"):
        return "-"
    return duration(expires - now)


def _one_line(text: str | None) -> str:
    if not text:
        return ""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def header(snapshot: DeploymentSnapshot) -> Text:
    """'NAME  state  local network  budget 0.01/1 GLM  3 running · 1 starting'."""
    state = snapshot.state
    kind = snapshot.network_kind
    network_text = {"local": "local network", "yagna": "yagna"}.get(str(kind), str(kind))
    if kind == "yagna" and snapshot.api_url:
        network_text += f" {snapshot.api_url}"
    text = Text()
    text.append(snapshot.name, style="bold")
    text.append("  ")
    text.append(state, style=DEPLOYMENT_STYLES.get(state, ""))
    text.append(f"  {network_text}", style="cyan")
    text.append(f"  budget {amount(snapshot.spent)}/{amount(snapshot.budget)} GLM")
    burn = burn_text(snapshot)
    if burn:
        text.append(f" · {burn}")
    counts = state_counts(snapshot)
    parts = [f"{counts[s]} {s}" for s in STATE_ORDER if counts.get(s)]
    if parts:
        text.append("  " + " · ".join(parts), style="dim")
    return text


def burn_text(snapshot: DeploymentSnapshot, now: float | None = None) -> str:
    """'0.072 GLM/h, lasts 13h52m' (the pace, and how long the budget lasts at it); ''
    while the pace is unknown."""
    if snapshot.burn_per_hour is None:
        return ""
    text = f"{amount(snapshot.burn_per_hour)} GLM/h"
    runs_out = parse_iso(snapshot.runs_out_at)
    if runs_out is not None:
        now = time.time() if now is None else now
        text += f", lasts {duration(runs_out - now)}"
    return text


def outage_text(snapshot: DeploymentSnapshot, now: float) -> str:
    """The line under the header while yagna does not answer the instances: how long,
    counted to `now` from when the first instance began to wait."""
    outage = snapshot.outage
    if outage is None:
        return ""
    since = parse_iso(outage.since)
    seconds = max(0.0, now - since) if since is not None else outage.seconds
    return (
        f"yagna at {outage.api_url} not answering for {duration(seconds)}: "
        "the instances wait for it (their providers are not blamed)"
    )


def _select_rows(
    rows: list[tuple[str, InstanceView]], max_rows: int | None
) -> tuple[list[tuple[str, InstanceView]], dict[str, int]]:
    """Keep at most max_rows rows, preferring those not running; count what was left out."""
    if max_rows is None or len(rows) <= max_rows:
        return rows, {}
    limit = max(1, max_rows - 1)  # one line goes to the "... more" summary
    urgent = [i for i, (_, inst) in enumerate(rows) if inst.state != "running"]
    calm = [i for i, (_, inst) in enumerate(rows) if inst.state == "running"]
    keep = sorted((urgent + calm)[:limit])
    hidden: dict[str, int] = {}
    kept = set(keep)
    for i, (_, inst) in enumerate(rows):
        if i not in kept:
            hidden[inst.state] = hidden.get(inst.state, 0) + 1
    return [rows[i] for i in keep], hidden


def _cell_width(values: list[str], title: str, cap: int) -> int:
    return min(cap, max([len(title), *(len(v) for v in values)]))


class DeploymentView:
    """The header plus one row per instance, laid out for the console's actual width.

    Column widths are computed from the data (never squeezed into "lo…" stubs); when the
    console is too narrow for everything, the least important columns go first and the last
    output takes whatever width is left.
    """

    # Dropped in this order when the console is narrow.
    OPTIONAL = ("RNW", "EXPIRES", "RST", "UP", "COST", "IP", "PROVIDER")

    def __init__(
        self,
        snapshot: DeploymentSnapshot,
        *,
        now: float | None = None,
        max_rows: int | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.now = time.time() if now is None else now
        self.max_rows = max_rows

    def _rows(self) -> tuple[list[dict[str, str]], dict[str, int]]:
        selected, hidden = _select_rows(instances(self.snapshot), self.max_rows)
        rows = []
        for service, inst in selected:
            rows.append(
                {
                    "INSTANCE": f"{service}.{inst.index}",
                    "STATE": state_text(inst),
                    "PROVIDER": inst.provider_name or "-",
                    "IP": inst.ip or "-",
                    "UP": _uptime(inst, self.now),
                    "RST": str(inst.restarts),
                    "RNW": str(inst.renewals),
                    "COST": amount(inst.cost),
                    "EXPIRES": _expires(inst, self.now),
                    "LAST OUTPUT": _one_line(inst.last_output),
                }
            )
        return rows, hidden

    def table(self, width: int) -> Table:
        rows, _ = self._rows()
        caps = {"INSTANCE": 24, "STATE": 32, "PROVIDER": 20, "IP": 15, "UP": 6, "RST": 3, "RNW": 3}
        caps["COST"] = 8
        caps["EXPIRES"] = 7
        widths = {
            name: _cell_width([r[name] for r in rows], name, cap) for name, cap in caps.items()
        }
        columns = list(widths)
        if not any(r["IP"] != "-" for r in rows):
            columns.remove("IP")  # no VPN: no column for it

        def output_room() -> int:
            return width - sum(widths[c] for c in columns) - len(columns) - 1

        for name in self.OPTIONAL:
            if output_room() >= 12:
                break
            columns.remove(name)
        # No box: a single space between columns is what lets 8 columns fit in 80.
        table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold", show_edge=False)
        right = {"UP", "RST", "RNW", "COST", "EXPIRES"}
        for name in columns:
            table.add_column(
                name,
                width=widths[name],
                no_wrap=True,
                overflow="ellipsis",
                justify="right" if name in right else "left",
            )
        # A fixed width here too: rich shrinks every column evenly when the content of any
        # column is wider than the room left, which would cut "running" to "runn…".
        table.add_column(
            "LAST OUTPUT", no_wrap=True, overflow="ellipsis", width=max(output_room(), 4)
        )
        for row in rows:
            cells: list[str | Text] = []
            for name in columns:
                if name == "STATE":
                    state = row[name].split(" ", 1)[0]  # "starting (image 45 %, ...)"
                    cells.append(Text(row[name], style=STATE_STYLES.get(state, "")))
                else:
                    cells.append(row[name])
            cells.append(row["LAST OUTPUT"])
            table.add_row(*cells)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        snapshot = self.snapshot
        yield header(snapshot)
        if snapshot.reason:
            yield Text(snapshot.reason, style="red")
        if snapshot.outage is not None:
            yield Text(outage_text(snapshot, self.now), style="bold yellow")
        if snapshot.ports:
            yield Text("ports: " + ", ".join(p.describe() for p in snapshot.ports), style="cyan")
        yield self.table(options.max_width)
        _, hidden = self._rows()
        if hidden:
            summary = ", ".join(f"{n} {s}" for s, n in sorted(hidden.items()))
            yield Text(f"… {sum(hidden.values())} more instances not shown ({summary})")
        held = snapshot.held or ()
        if held:
            yield Text("The journal says these are still held:", style="bold red")
            for line in held:
                yield Text(f"  {line}")


def deployment_table(
    snapshot: DeploymentSnapshot, *, now: float | None = None, max_rows: int | None = None
) -> RenderableType:
    """The renderable `up` and `status` show: header plus at most `max_rows` instance rows."""
    return DeploymentView(snapshot, now=now, max_rows=max_rows)


def plain_lines(snapshot: DeploymentSnapshot, *, now: float | None = None) -> list[str]:
    """The same information as lines without colour, for pipes and logs (non-TTY)."""
    now = time.time() if now is None else now
    lines = [
        f"deployment {snapshot.name} state={snapshot.state} "
        f"network={snapshot.network_kind} "
        f"budget={amount(snapshot.spent)}/{amount(snapshot.budget)} GLM"
        + (f" burn={burn_text(snapshot, now)}" if snapshot.burn_per_hour is not None else "")
    ]
    if snapshot.reason:
        lines.append(f"reason: {snapshot.reason}")
    if snapshot.outage is not None:
        lines.append(outage_text(snapshot, now))
    for port in snapshot.ports:
        lines.append(f"port {port.describe()}")
    for service, inst in instances(snapshot):
        ip = f" ip={inst.ip}" if inst.ip else ""
        lines.append(
            f"{service}.{inst.index} {state_text(inst)} "
            f"provider={inst.provider_name or '-'}{ip} up={_uptime(inst, now)} "
            f"restarts={inst.restarts} renewals={inst.renewals} cost={amount(inst.cost)} "
            f"expires={_expires(inst, now)} | {_one_line(inst.last_output)}".rstrip()
        )
    for line in snapshot.held or ():
        lines.append(f"still held: {line}")
    return lines


def deployments_table(rows: Sequence[Mapping[str, object]]) -> Table:
    """`ls`: one row per known deployment."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("NAME", "STATE", "SUPERVISOR", "NETWORK", "INSTANCES", "SPENT"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for row in rows:
        state = str(row.get("state"))
        table.add_row(
            str(row.get("name")),
            Text(state, style=DEPLOYMENT_STYLES.get(state, "")),
            f"{row.get('pid')}" + ("" if row.get("alive") else " (gone)")
            if row.get("pid")
            else "-",
            str(row.get("network") or "-"),
            str(row.get("instances", "-")),
            amount(row.get("spent")),
        )
    return table
