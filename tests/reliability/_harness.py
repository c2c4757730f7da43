"""The reliability harness: run one scenario through the CLI, then prove nothing leaked.

A scenario writes a manifest (and a faults file) into the test's folder, drives
`golem-deploy up/status/down` as a subprocess, and ends with `audit()`, which checks the
invariants every row of the fault matrix shares:

- no process of ours is left: none of the pids the deployment recorded (supervisor, local
  network host, yagna daemons) is alive, and no process anywhere names the test's home;
- the journal holds nothing (fold is empty), ends with a clean DeploymentStopped, and pairs
  every AgreementCreated / ActivityCreated / AllocationCreated / LocalnetStarted with its
  release;
- the requestor yagna itself agrees: the deployment's private network is started again from
  its state folder (its databases survive `down`) and asked over REST, with the requestor
  key from that state, what became of every agreement, activity, invoice, debit note and
  allocation. Every agreement that was approved is Terminated, every activity is
  Terminated, no allocation is left, every invoice received is accepted, and the GLM
  accepted never exceeds the budget.

When GOLEM_DEPLOY_RELIABILITY_REPORT names a file, each audit appends its figures there as
one JSON line (bench/reliability.py sums them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from _cli_helpers import CLI_TIMEOUT, Cli, processes_mentioning, wait_until

from golem_deploy import localnet
from golem_deploy.manifest.durations import parse_duration
from golem_deploy.supervisor import journal
from golem_deploy.supervisor.held import SNAPSHOT_KIND, held_from_plain

ALPINE = "d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376"
REPORT_ENV = "GOLEM_DEPLOY_RELIABILITY_REPORT"
# States in which an agreement still binds (or is about to bind) requestor and provider.
# "Proposal" is not one: the requestor never confirmed it, the provider never saw it, and it
# expires by itself (yagna keeps one when the answer to POST /agreements was lost, row 7).
BINDING_STATES = {"Pending", "Approved"}
NEVER_BOUND_STATES = {"Proposal", "Rejected", "Cancelled", "Expired"}


def service(
    *,
    instances: int = 1,
    start: list[Any] | None = None,
    run: Any = None,
    shutdown: list[Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One service of a manifest, on the alpine image, with short defaults."""
    spec: dict[str, Any] = {
        "payload": {"image_hash": ALPINE},
        "instances": instances,
        "expiration": "15m",
    }
    if start is not None:
        spec["start"] = start
    spec["run"] = run if run is not None else {"every": "2s", "steps": [["/bin/echo", "tick"]]}
    if shutdown is not None:
        spec["shutdown"] = shutdown
    spec.update(extra)
    return spec


def write_manifest(
    folder: Path,
    name: str,
    services: dict[str, dict[str, Any]],
    *,
    budget: str = "1.0",
    **top: Any,
) -> Path:
    """A manifest file (JSON is YAML) in `folder`."""
    doc: dict[str, Any] = {"version": "1", "name": name, "budget": float(budget)}
    doc.update(top)
    doc["services"] = services
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


@dataclass
class Scenario:
    """One deployment of one test: its manifest, faults and everything it ever started."""

    cli: Cli
    name: str
    manifest: Path
    budget: Decimal
    providers: int = 3
    faults: Path | None = None
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def create(
        cls,
        cli: Cli,
        folder: Path,
        name: str,
        services: dict[str, dict[str, Any]],
        *,
        faults: dict[str, dict[str, Any]] | None = None,
        providers: int = 3,
        budget: str = "1.0",
        **top: Any,
    ) -> Scenario:
        manifest = write_manifest(folder, name, services, budget=budget, **top)
        faults_path = None
        if faults:
            faults_path = folder / f"{name}-faults.yaml"
            faults_path.write_text(json.dumps(faults), encoding="utf-8")
        return cls(cli, name, manifest, Decimal(budget), providers, faults_path)

    # ---- driving the CLI ----------------------------------------------------------------

    def up_args(self, *extra: str) -> list[str]:
        args = ["up", str(self.manifest), "--providers", str(self.providers)]
        if self.faults is not None:
            args += ["--faults", str(self.faults)]
        return [*args, *extra]

    def up(self, timeout: str = "3m") -> subprocess.CompletedProcess[str]:
        """`up -d`; returns the finished process (the caller asserts its exit code).

        The process gets `timeout` and a minute more (at least the CLI helper's default):
        `up`'s own --timeout is what the row tests, and a loaded machine must not cut it
        short (the load row's 8 minutes were once killed at that default of 4)."""
        wait = max(CLI_TIMEOUT, parse_duration(timeout) + 60.0)
        return self.cli(*self.up_args("-d", "--timeout", timeout), timeout=wait)

    def popen_up(self, *extra: str) -> subprocess.Popen[str]:
        return self.cli.popen(
            *self.up_args(*extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_like_a_terminal,
        )

    def down(self, *extra: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
        return self.cli("down", "-n", self.name, *extra, timeout=timeout)

    def status(self) -> dict[str, Any]:
        return self.cli.status(self.name)

    def instances(self) -> list[dict[str, Any]]:
        return [i for s in self.status()["services"] for i in s["instances"]]

    @property
    def folder(self) -> Path:
        return self.cli.deployment_dir(self.name)

    def journal(self) -> list[dict[str, Any]]:
        path = self.folder / "journal.jsonl"
        return list(journal.read(path)) if path.exists() else []

    def kinds(self) -> list[str]:
        return [r["kind"] for r in self.journal()]

    def wait_for_record(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        """The first journal record matching `predicate` (waits for it, bounded)."""

        def found() -> dict[str, Any] | None:
            return next((r for r in self.journal() if predicate(r)), None)

        result: dict[str, Any] = wait_until(found, timeout, what)
        return result

    def wait_for_status(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            last["snap"] = snap = self.status()
            return snap if predicate(snap) else None

        try:
            result: dict[str, Any] = wait_until(check, timeout, what)
        except AssertionError as error:
            tail = [
                {k: v for k, v in r.items() if k in ("kind", "reason", "old", "new", "index")}
                for r in self.journal()[-15:]
            ]
            raise AssertionError(
                f"{error}\nlast status: {last.get('snap')}\njournal: {tail}"
            ) from None
        return result

    def kill_supervisor(self) -> None:
        pid = self.cli.supervisor_pid(self.name)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.status()["supervisor"]["alive"], 15, "the supervisor gone")

    # ---- the audit ------------------------------------------------------------------------

    def recorded_pids(self) -> dict[int, str]:
        """Every pid the deployment recorded: its supervisor, and the local network's host
        and daemons (from the local network's own journal, which keeps them after stop)."""
        pids: dict[int, str] = {}
        for record in self.journal():
            if record["kind"] == "DeploymentStarted" and isinstance(record.get("pid"), int):
                pids[record["pid"]] = "supervisor"
        net_journal = self.folder / "localnet" / "journal.jsonl"
        if net_journal.exists():
            for line in net_journal.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("event") in ("host-started", "node-started") and record.get("pid"):
                    pids[int(record["pid"])] = str(record.get("node") or "host")
        return pids

    def audit(
        self,
        *,
        expect_invoices: bool = True,
        vanished: tuple[str, ...] = (),
        yagna: YagnaView | None = None,
    ) -> Audit:
        """After the final `down`: check every shared invariant (see the module doc).

        `yagna`: the view of a network the test runs itself (else the deployment's private
        network is started again and asked)."""
        records = self.journal()
        ours = self._live_processes()
        view = yagna or yagna_view(self.folder / "localnet", self.providers)
        after_view = self._live_processes()  # the audit's own network is gone again
        audit = Audit(self, records, view, ours + after_view)
        audit.report(vanished)
        audit.check(expect_invoices=expect_invoices, vanished=vanished)
        return audit

    def _live_processes(self) -> list[str]:
        live = [f"{pid} {cmd}" for pid, cmd in processes_mentioning(str(self.cli.home))]
        for pid, what in self.recorded_pids().items():
            if _alive_and_ours(pid, str(self.cli.home)):
                live.append(f"{pid} (recorded {what})")
        return sorted(set(live))


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    """A CLI process's (stdout, stderr) once it ended (bounded); killed if it did not."""
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return out, err


def _like_a_terminal() -> None:
    """Ctrl-C as a user's terminal delivers it: a test run in the background (`&`, CI
    runners) starts with SIGINT ignored, which every child would inherit, and Python then
    never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive_and_ours(pid: int, home: str) -> bool:
    """A recorded pid counts only while it is alive and still tied to the test's home (a
    reused pid belongs to someone else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    if "\nState:\tZ" in status:
        return False
    return home.encode() in cmdline or home.encode() in environ


# ---- asking the requestor yagna ---------------------------------------------------------


@dataclass
class YagnaView:
    """What the requestor yagna recorded for this deployment."""

    agreements: dict[str, str]  # agreement id -> state
    activities: dict[str, str]  # activity id -> state
    invoices: list[dict[str, Any]]
    debit_notes: list[dict[str, Any]]
    allocations: list[dict[str, Any]]
    # yagna's own attribution, independent of the journal: agreement id -> provider node
    # id (the agreement's offer), activity id -> agreement id (GET activity?agreementId)
    agreement_providers: dict[str, str] = field(default_factory=dict)
    activity_agreements: dict[str, str] = field(default_factory=dict)

    def accepted(self) -> Decimal:
        """GLM the requestor accepted: an accepted invoice's amount, else the highest
        accepted debit note of each activity of that agreement."""
        total = Decimal(0)
        invoiced = set()
        for invoice in self.invoices:
            if invoice.get("status") in ("ACCEPTED", "SETTLED"):
                total += Decimal(str(invoice["amount"]))
                invoiced.add(invoice["agreementId"])
        per_activity: dict[str, Decimal] = {}
        for note in self.debit_notes:
            if note.get("status") not in ("ACCEPTED", "SETTLED"):
                continue
            if note.get("agreementId") in invoiced:
                continue
            amount = Decimal(str(note["totalAmountDue"]))
            key = str(note.get("activityId"))
            per_activity[key] = max(per_activity.get(key, Decimal(0)), amount)
        return total + sum(per_activity.values(), Decimal(0))


def yagna_get(api_url: str, app_key: str, path: str) -> Any:
    request = urllib.request.Request(api_url + path, headers={"Authorization": f"Bearer {app_key}"})
    with urllib.request.urlopen(request, timeout=20) as answer:  # loopback only
        body = answer.read()
    return json.loads(body) if body else None


def yagna_view(state_dir: Path, providers: int) -> YagnaView:
    """Start the deployment's (stopped) private network again and ask its requestor node.

    The daemons' databases live in the state folder, so the restarted requestor node knows
    every agreement, activity and payment document of the deployment."""
    if not (state_dir / "yagna").is_dir():
        return YagnaView({}, {}, [], [], [])
    info = localnet.start(state_dir, providers=providers, timeout=90.0)
    try:
        return ask_yagna(info.api_url, info.app_key, _journal_activities(state_dir.parent))
    finally:
        localnet.stop(state_dir)


def ask_yagna(url: str, key: str, activity_ids: set[str]) -> YagnaView:
    """Everything the requestor yagna at `url` recorded (REST, the requestor's key)."""
    agreements: dict[str, str] = {}
    providers: dict[str, str] = {}
    for entry in yagna_get(url, key, "/market-api/v1/agreements") or []:
        agreement = yagna_get(url, key, f"/market-api/v1/agreements/{entry['id']}")
        agreements[entry["id"]] = str(agreement["state"])
        providers[entry["id"]] = str((agreement.get("offer") or {}).get("providerId"))
    invoices = list(yagna_get(url, key, "/payment-api/v1/invoices") or [])
    notes = list(yagna_get(url, key, "/payment-api/v1/debitNotes") or [])
    # Which activities the requestor node recorded at all: one whose creation request was
    # cut off (the supervisor SIGKILLed while POST /activity was in flight) exists on the
    # provider only; yagna then cannot answer for it, and nothing of ours could destroy it.
    # Every activity it did record is checked too, journaled or not: one whose creation
    # answer came too late for the engine (a loaded machine, a dying provider) is one the
    # journal never saw, and it must be Terminated all the same.
    recorded: dict[str, str] = {}
    for agreement_id in agreements:
        listed = yagna_get(url, key, f"/activity-api/v1/activity?agreementId={agreement_id}")
        recorded.update((str(a), agreement_id) for a in listed or [])
    activities: dict[str, str] = {}
    for activity_id in {str(n["activityId"]) for n in notes} | activity_ids | set(recorded):
        try:
            state = yagna_get(url, key, f"/activity-api/v1/activity/{activity_id}/state")
            activities[activity_id] = str(state["state"][0])
        except urllib.error.HTTPError as error:
            known = "" if activity_id in recorded else UNRECORDED
            activities[activity_id] = f"{known}HTTP {error.code}"
    allocations = list(yagna_get(url, key, "/payment-api/v1/allocations") or [])
    return YagnaView(agreements, activities, invoices, notes, allocations, providers, recorded)


UNRECORDED = "never recorded by the requestor: "


def _journal_activities(folder: Path) -> set[str]:
    return {
        str(r["activity_id"])
        for r in journal.read(folder / "journal.jsonl")
        if r["kind"] == "ActivityCreated"
    }


# ---- the invariants ----------------------------------------------------------------------


@dataclass
class Audit:
    scenario: Scenario
    records: list[dict[str, Any]]
    yagna: YagnaView
    processes: list[str]

    def ids(self, kind: str, key: str) -> list[str]:
        return [str(r[key]) for r in self.records if r["kind"] == kind and r.get(key)]

    def compacted_agreements(self) -> set[str]:
        """Agreements whose AgreementCreated a journal compaction replaced: those its
        snapshot records still held (see supervisor/journal_compact.py)."""
        held: set[str] = set()
        for record in self.records:
            if record["kind"] == SNAPSHOT_KIND:
                held |= set(held_from_plain(record.get("held")).agreements)
        return held

    @property
    def leaked_agreements(self) -> dict[str, str]:
        return {a: s for a, s in self.yagna.agreements.items() if s in BINDING_STATES}

    @property
    def orphaned_agreements(self) -> dict[str, str]:
        """Agreements yagna holds that the journal never saw as created and that never bound
        anyone: `Proposal` ones left when the answer to `POST /agreements` was lost, and
        the `Cancelled` ones the engine found and cancelled (journaled AgreementOrphaned)."""
        created = set(self.ids("AgreementCreated", "agreement_id"))
        return {
            a: s
            for a, s in self.yagna.agreements.items()
            if a not in created and s in NEVER_BOUND_STATES
        }

    @property
    def orphans_cancelled(self) -> list[str]:
        return [
            str(r["agreement_id"])
            for r in self.records
            if r["kind"] == "AgreementOrphaned" and r.get("cancelled") is True
        ]

    @property
    def live_activities(self) -> dict[str, str]:
        return {a: s for a, s in self.yagna.activities.items() if s != "Terminated"}

    def stuck_activities(self, vanished: tuple[str, ...] = ()) -> dict[str, str]:
        """Activities yagna does not show Terminated, except those of providers that died
        on purpose (see `check`), and those the requestor node never recorded whose
        agreement it shows Terminated (the provider ended them with it; see ask_yagna).

        An activity is the vanished provider's when its agreement is with that provider and
        is Terminated. Its agreement is the journal's (ActivityCreated), else yagna's own
        (the activity listing of each agreement, a debit note); the agreement's provider
        is the journal's (AgreementCreated), else the agreement's offer in yagna, named by
        the provider ids the journal saw. yagna's side matters: under load an activity's
        creation can answer after the engine gave up on it (the provider died meanwhile),
        and the journal then never saw that activity."""
        agreement_of_note = {
            str(n["activityId"]): str(n.get("agreementId")) for n in self.yagna.debit_notes
        }
        agreement_of = {
            **agreement_of_note,
            **self.yagna.activity_agreements,
            **{
                str(r["activity_id"]): str(r.get("agreement_id"))
                for r in self.records
                if r["kind"] == "ActivityCreated"
            },
        }
        name_of_provider = {
            str(r["provider_id"]): str(r["provider_name"])
            for r in self.records
            if r.get("provider_id") and r.get("provider_name")
        }
        provider_of = {
            a: name_of_provider.get(p, p) for a, p in self.yagna.agreement_providers.items()
        }
        provider_of.update(
            {
                str(r["agreement_id"]): r.get("provider_name")
                for r in self.records
                if r["kind"] == "AgreementCreated"
            }
        )

        def vanished_with_its_provider(activity_id: str) -> bool:
            agreement_id = agreement_of.get(activity_id, "")
            return (
                provider_of.get(agreement_id) in vanished
                and self.yagna.agreements.get(agreement_id) == "Terminated"
            )

        return {
            a: s
            for a, s in self.live_activities.items()
            if not (s == "Unresponsive" and vanished_with_its_provider(a))
            and not (
                s.startswith(UNRECORDED)
                and self.yagna.agreements.get(agreement_of_note.get(a, "")) == "Terminated"
            )
        }

    @property
    def beyond_budget(self) -> Decimal:
        return max(Decimal(0), self.yagna.accepted() - self.scenario.budget)

    def report(self, vanished: tuple[str, ...] = ()) -> None:
        path = os.environ.get(REPORT_ENV)
        if not path:
            return
        figures = {
            "scenario": os.environ.get("PYTEST_CURRENT_TEST", self.scenario.name).split(" ")[0],
            "agreements": len(self.yagna.agreements),
            "agreements_leaked": len(self.leaked_agreements),
            "activities_leaked": len(self.stuck_activities(vanished)),
            "processes_leaked": len(self.processes),
            "agreements_orphaned": len(self.orphaned_agreements),
            "orphans_cancelled": len(self.orphans_cancelled),
            "glm_accepted": str(self.yagna.accepted()),
            "glm_accepted_beyond_budget": str(self.beyond_budget),
            "seconds": round(time.monotonic() - self.scenario.started, 1),
        }
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(figures) + "\n")

    def check(self, *, expect_invoices: bool = True, vanished: tuple[str, ...] = ()) -> None:
        """`vanished`: providers that died on purpose. yagna cannot destroy an activity on a
        provider that no longer answers (DELETE needs the provider), so those activities may
        stay Unresponsive in the requestor's records; their agreements must still be
        Terminated, which is what stops all billing."""
        assert self.processes == [], f"processes of ours left: {self.processes}"
        held = journal.fold(self.records)
        assert held.empty, f"the journal still holds: {held.summary()}"
        kinds = [r["kind"] for r in self.records]
        assert kinds and kinds[-1] == "DeploymentStopped", kinds[-5:]
        assert self.records[-1].get("clean") is True, self.records[-1]
        for created, ended, key in (
            ("AgreementCreated", "AgreementTerminated", "agreement_id"),
            ("ActivityCreated", "ActivityDestroyed", "activity_id"),
            ("AllocationCreated", "AllocationReleased", "allocation_id"),
        ):
            missing = set(self.ids(created, key)) - set(self.ids(ended, key))
            assert not missing, f"{created} without {ended} in the journal: {missing}"
        assert kinds.count("LocalnetStarted") <= kinds.count("LocalnetStopped")

        # The requestor yagna's own records.
        journal_agreements = set(self.ids("AgreementCreated", "agreement_id"))
        journal_agreements |= self.compacted_agreements()
        assert journal_agreements <= set(self.yagna.agreements), (
            "agreements in the journal that yagna does not know",
            journal_agreements - set(self.yagna.agreements),
        )
        unjournaled = {
            a: s
            for a, s in self.yagna.agreements.items()
            if a not in journal_agreements and s not in NEVER_BOUND_STATES
        }
        assert not unjournaled, f"agreements yagna has but the journal never saw: {unjournaled}"
        assert not self.leaked_agreements, f"agreements still binding: {self.leaked_agreements}"
        for agreement_id in self.orphans_cancelled:  # journaled as cancelled: yagna agrees
            assert self.yagna.agreements.get(agreement_id) == "Cancelled", (
                agreement_id,
                self.yagna.agreements.get(agreement_id),
            )
        for agreement_id in set(self.ids("ActivityCreated", "agreement_id")):
            assert self.yagna.agreements.get(agreement_id) == "Terminated", (
                agreement_id,
                self.yagna.agreements.get(agreement_id),
            )
        stuck = self.stuck_activities(vanished)
        assert not stuck, f"activities not destroyed: {stuck}"
        assert self.yagna.allocations == [], f"allocations left: {self.yagna.allocations}"
        assert self.beyond_budget == 0, (
            f"accepted {self.yagna.accepted()} GLM, budget {self.scenario.budget}"
        )
        if expect_invoices:
            unaccepted = [
                (i["invoiceId"], i["status"])
                for i in self.yagna.invoices
                if i.get("status") not in ("ACCEPTED", "SETTLED")
            ]
            assert not unaccepted, f"invoices not accepted: {unaccepted}"
