"""Fault injection for the local network's providers (reliability tests, demos).

A faults file is YAML keyed by provider name::

    local-provider-2:
      reject_agreements: true        # counter proposals, then reject every agreement
      fail_activity_create: true     # every CreateActivity ends as Terminated "creation failed"
      die_after: 10s                 # 10 s after its first approved agreement the provider
                                     # vanishes: ExeUnits stop answering and heartbeating,
                                     # its offer is withdrawn, no more notes or invoices
      die_when: /tmp/kill-2          # the same vanishing, as soon as this file exists (a
                                     # test picks the moment, after it saw the placement)
      come_back_after: 30s           # with die_after or die_when: the vanished provider
                                     # comes back this long after it died, as the same
                                     # node (identity, work folder) with a new offer, like
                                     # a rebooted machine. Then it can die again: die_after
                                     # counts from its next first agreement, and die_when
                                     # removes its file when it strikes, so creating the
                                     # file again kills it again
      fail_commands_matching: "^/bin/false|crash"  # run steps whose argv (joined by spaces)
                                     # matches exit with code 1
      slow_start: 5s                 # deploy/start take this long
      slow_negotiation: 3s           # answering a proposal or an agreement takes this long
      never_invoice: true            # debit notes yes, the final invoice never
      max_agreement: 60s             # rejects demands whose expiration is further away
                                     # than this (as a real provider's max agreement
                                     # expiration), so deployments must renew sooner
      reject_agreements_after: 1     # approves its first N agreements, rejects the rest
                                     # (a provider that will not renew)
      debit_notes_every: 1s          # debit notes this often, whatever was agreed (a
                                     # requestor ends such agreements: too many notes)
      lose_terminated_report: true   # an ended ExeUnit's Terminated report over the bus
                                     # is lost (as yagna's bus sometimes cancels it under
                                     # load); the agent then reports it over REST

Durations are a number of seconds or a number with a unit: ms, s, m, h (e.g. 500ms, 1.5s).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golem_deploy.localnet.node import LocalnetError

_PROVIDER_NAME = re.compile(r"^local-provider-[1-9][0-9]*$")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class FaultsError(LocalnetError):
    """The faults file is not valid."""


@dataclass(frozen=True)
class ProviderFaults:
    """What one provider does wrong on purpose. The default is a well-behaved provider."""

    reject_agreements: bool = False
    fail_activity_create: bool = False
    die_after: float | None = None
    die_when: Path | None = None
    come_back_after: float | None = None
    fail_commands_matching: re.Pattern[str] | None = None
    slow_start: float = 0.0
    slow_negotiation: float = 0.0
    never_invoice: bool = False
    lose_terminated_report: bool = False
    max_agreement: float | None = None
    reject_agreements_after: int | None = None
    debit_notes_every: float | None = None


NO_FAULTS = ProviderFaults()


def parse_duration(value: object) -> float:
    """Seconds from `10`, `2.5`, `"500ms"`, `"10s"`, `"1m"`, `"1h"`; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s or 500ms")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 10s, 500ms, 1.5m)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def _where(source: str, node: Any, key: object | None = None) -> str:
    """`file:line:column` of a mapping key when ruamel kept positions, else just the file."""
    lc = getattr(node, "lc", None)
    if lc is not None:
        try:
            line, column = lc.key(key) if key is not None else (lc.line, lc.col)
            return f"{source}:{line + 1}:{column + 1}"
        except (KeyError, TypeError, AttributeError):
            pass
    return source


def parse_faults(data: object, source: str = "faults") -> dict[str, ProviderFaults]:
    """Validate a parsed faults document; report every problem at once."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise FaultsError(
            f"{source}: the faults file must map provider names to their faults",
            hint="e.g.\nlocal-provider-2:\n  die_after: 10s",
        )
    problems: list[str] = []
    result: dict[str, ProviderFaults] = {}
    for name, spec in data.items():
        where = _where(source, data, name)
        if not isinstance(name, str) or not _PROVIDER_NAME.match(name):
            problems.append(f"{where}: {name!r} is not a provider name (local-provider-1..N)")
            continue
        if spec is None:
            result[name] = NO_FAULTS
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: the faults of {name} must be a mapping")
            continue
        values: dict[str, Any] = {}
        for key, value in spec.items():
            at = _where(source, spec, key)
            try:
                if key in (
                    "reject_agreements",
                    "fail_activity_create",
                    "never_invoice",
                    "lose_terminated_report",
                ):
                    if not isinstance(value, bool):
                        raise ValueError("expected true or false")
                    values[key] = value
                elif key in ("die_after", "slow_start", "max_agreement", "slow_negotiation"):
                    values[key] = parse_duration(value)
                elif key == "come_back_after":
                    values[key] = parse_duration(value)
                    if values[key] <= 0:
                        raise ValueError("expected a duration longer than 0, such as 30s")
                elif key == "reject_agreements_after":
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError("expected a number of agreements (0 or more)")
                    values[key] = value
                elif key == "debit_notes_every":
                    values[key] = parse_duration(value)
                    if values[key] <= 0:
                        raise ValueError("expected a duration longer than 0, such as 1s")
                elif key == "die_when":
                    if not isinstance(value, str) or not value.startswith("/"):
                        raise ValueError("expected the absolute path of a file")
                    values[key] = Path(value)
                elif key == "fail_commands_matching":
                    if not isinstance(value, str):
                        raise ValueError("expected a regular expression string")
                    values[key] = re.compile(value)
                else:
                    raise ValueError(
                        "unknown fault (known: reject_agreements, fail_activity_create, "
                        "die_after, die_when, come_back_after, fail_commands_matching, slow_start, "
                        "slow_negotiation, never_invoice, max_agreement, reject_agreements_after, "
                        "debit_notes_every, lose_terminated_report)"
                    )
            except (ValueError, re.error) as error:
                problems.append(f"{at}: {name}.{key}: {error}")
        if "come_back_after" in spec and not ({"die_after", "die_when"} & set(spec)):
            problems.append(
                f"{_where(source, spec, 'come_back_after')}: {name}.come_back_after: a provider"
                " comes back only after it died: add die_after or die_when"
            )
        result[name] = ProviderFaults(**values)
    if problems:
        raise FaultsError(
            "invalid faults file:\n  " + "\n  ".join(problems),
            hint="see the README (Faults) or docs/localnet.md for the file format",
        )
    return result


def load_faults(path: Path) -> dict[str, ProviderFaults]:
    """Read and validate a faults YAML file."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise FaultsError(f"cannot read the faults file {path}: {error.strerror}") from error
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as error:
        raise FaultsError(f"{path}: not valid YAML: {error}") from error
    return parse_faults(data, str(path))
