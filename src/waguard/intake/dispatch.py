"""From a routing decision to playbook runs: one run per incident, started in the background.

`dispatch` runs inside the delivery's SQLite transaction: it closes what the source says is over,
then claims each incident (opening it, or joining the open one). A join or a resolve of an incident
whose run has started is also news for that run: after the transaction, `launch` stores it on the run
as an update (waguard.playbook.updates), retried like a start, so the run adds the targets or records the
resolve. New incidents are started after the answer has gone back: the start is a background task,
retried with back-off until Prefect takes it, and resumed from the store if the service restarts
first. The delivery is never kept waiting on Prefect, and an incident is never lost because Prefect
was briefly down.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from waguard.intake.audit import AuditWriter
from waguard.intake.claims import PendingStart
from waguard.intake.metrics import IntakeMetrics
from waguard.intake.params import build_parameters, incident_id
from waguard.intake.routing import Route, Start
from waguard.intake.starter import RunStarter
from waguard.playbook.updates import RunUpdate
from waguard.state.protocols import IntakeState

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Joined:
    """What one delivery did to one incident."""

    incident_id: str
    playbook: str
    outcome: str  # "started" (opened: its run is being started) or "joined"
    run_id: str | None
    parameters: dict[str, object] | None = None  # a new incident's run parameters


@dataclass(frozen=True)
class Dispatched:
    """What one delivery changed: the incidents it opened or joined, and news for runs under way
    (sent by `launch` once the delivery's commit is durable, never before)."""

    joined: list[Joined]
    updates: list[tuple[str, RunUpdate]]  # (run id, update)


LIVE_RECHECK_S = 1.0
RUNS_TOLD_KEPT = 4096  # runs whose news is remembered (cleared whole when full)
# Another replica's claim still pending after this long: that replica died (or Prefect keeps refusing
# it, and a doubled start is one run by the idempotency key). The sweep looks every SWEEP_EVERY_S and
# holds what it takes for HOLD_S, so two live replicas do not both start one.
PENDING_STALE_S = 5.0
SWEEP_EVERY_S = 2.0
HOLD_S = 60.0


class Dispatcher:
    """Claims incidents and starts their runs."""

    def __init__(self, store: IntakeState, starter: RunStarter, audit: AuditWriter, metrics: IntakeMetrics,
                 clock: Callable[[], float], retry_delays_s: Sequence[float] = RETRY_DELAYS_S) -> None:
        self.store, self.starter, self.audit, self.metrics = store, starter, audit, metrics
        self.clock = clock
        self.retry_delays_s = tuple(retry_delays_s)
        self._tasks: set[asyncio.Task[None]] = set()
        self._starting: set[str] = set()
        self._live: dict[str, float] = {}  # run id -> when Prefect last said it is still going
        self._outbox: dict[str, list[RunUpdate]] = {}  # run id -> updates not sent yet, oldest first
        # run id -> the news it has had (queued or delivered), by `_news`: a storm about one incident
        # repeats the same few parameter sets, and each repeat would be a Prefect write, a timeline
        # record and a Slack line saying "no new target".
        self._told: dict[str, set[Any]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.sweeps = False  # `waguard intake` sets it: sweep for other replicas' pending starts

    async def retire_ended(self, route: Route, *, now: float) -> None:
        """Close the open incidents `route` would join whose run has already ended.

        A finished playbook must not swallow a new detection: the next delivery for the same key
        opens a new incident (and run). A re-sent delivery is still a duplicate (its nonce). A failed
        read leaves the incident open.
        """
        for start in route.starts:
            found = self.store.open_run(start.key, start.playbook)
            if found is None:
                continue
            incident, run_id = found
            if now - self._live.get(run_id, float("-inf")) < LIVE_RECHECK_S:
                continue  # a storm of deliveries asks Prefect once a second, not once each
            try:
                if not await self.starter.has_ended(run_id):
                    self._live[run_id] = now
                    continue
            except Exception as err:  # noqa: BLE001 - Prefect unreachable: keep joining
                log.warning("intake: cannot read run %s (%s); incident %s stays open",
                            run_id, type(err).__name__, incident)
                continue
            self._live.pop(run_id, None)  # closed: the store never offers this run again
            self._told.pop(run_id, None)
            self.store.close_incident(incident, now=now)
            log.info("intake: incident %s closed: its run %s has ended", incident, run_id)

    def dispatch(self, source: str, route: Route, *, now: float, quiet_s: float) -> Dispatched:
        """Apply a route to the incident map (call inside the delivery's transaction)."""
        updates: list[tuple[str, RunUpdate]] = []
        for key in route.closes:
            for closed in self.store.close_incidents(key, now=now):
                log.info("intake: incident %s closed by its source", closed)
                run_id = self.store.run_of(closed)
                if run_id:
                    updates.append((run_id, RunUpdate(kind="resolved", source=source)))
        joined = []
        for start in route.starts:
            claim = self.store.claim(start.key, start.playbook, now=now, quiet_s=quiet_s,
                                     build=functools.partial(self._new, source, start))
            if not claim.new and claim.run_id and _news("joined", start.parameters, start.source) \
                    not in self._told.get(claim.run_id, ()):
                # Built, not validated: a literal kind, a dict and a str are all RunUpdate checks.
                update = RunUpdate.model_construct(kind="joined", parameters=dict(start.parameters),
                                                   source=start.source)
                updates.append((claim.run_id, update))
            # A join while the run is still being started is recorded only (the run reads the first
            # delivery's parameters); no log line each: a storm would write one per delivery.
            joined.append(Joined(claim.incident_id, claim.playbook, "started" if claim.new else "joined",
                                 claim.run_id, claim.parameters if claim.new else None))
        return Dispatched(joined, updates)

    @staticmethod
    def _new(source: str, start: Start, generation: int) -> tuple[str, dict[str, object]]:
        ident = incident_id(f"{start.key}:{start.playbook}:{generation}")
        params = build_parameters(start.playbook, {
            **start.parameters, "incident_id": ident, "severity": start.severity,
            "initiator": f"intake:{source}", "source": start.source,
        })
        return ident, params

    def launch(self, done: Dispatched) -> None:
        """Start the runs of newly opened incidents and send the updates, in the background (call only
        once the delivery's commit is durable)."""
        for j in done.joined:
            if j.outcome == "started" and j.parameters is not None:
                self._spawn(PendingStart(j.incident_id, j.playbook, dict(j.parameters)))
        post = getattr(self.starter, "post_update", None)
        for run_id, update in done.updates if post is not None else ():
            # The same news twice adds nothing to the run (targets merge; a resolve is a resolve): a
            # storm about one incident costs its run one update per parameter set, not one per delivery.
            told = self._told.get(run_id)
            if told is None:
                if len(self._told) >= RUNS_TOLD_KEPT:  # forgetting costs a repeated update at most
                    self._told.clear()
                told = self._told[run_id] = set()
            news = _news(update.kind, update.parameters, update.source)
            if news in told:
                continue
            told.add(news)
            queued = self._outbox.get(run_id)
            if queued is None:
                self._outbox[run_id] = [update]
                assert post is not None  # the loop runs only when the starter posts updates
                task = asyncio.get_running_loop().create_task(self._send(post, run_id),
                                                              name=f"updates {run_id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                queued.append(update)

    async def _send(self, post: Callable[[str, RunUpdate], Any], run_id: str) -> None:
        """Deliver a run's queued updates in order, one at a time, until its queue is empty."""
        queue = self._outbox[run_id]
        try:
            while queue:
                await self._post(post, run_id, queue[0])
                queue.pop(0)
        finally:
            self._outbox.pop(run_id, None)

    async def _post(self, post: Callable[[str, RunUpdate], Any], run_id: str, update: RunUpdate) -> None:
        """Deliver one update to its run; retried a while, then logged (the run may have ended)."""
        for attempt, delay in enumerate((*self.retry_delays_s[:4], None)):
            try:
                await post(run_id, update)
                log.debug("intake: %s update delivered to run %s", update.kind, run_id)
                return
            except Exception as err:  # the starter is a port: any failure is retried
                if delay is None:
                    log.error("intake: %s update for run %s not delivered after %d tries (%s)",
                              update.kind, run_id, attempt + 1, type(err).__name__)
                    # Not told after all: the next delivery with the same news tries again.
                    self._told.get(run_id, set()).discard(_news(update.kind, update.parameters,
                                                                update.source))
                    return
                await asyncio.sleep(delay)

    def resume_pending(self) -> int:
        """Start every incident whose run has not started yet (at service start); return how many.
        With `sweeps` set, keep taking starts other replicas left pending (`sweep_pending`) until `aclose`."""
        pending = self.store.pending()
        for p in pending:
            self._spawn(p)
        if self.sweeps and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="sweep")
        return len(pending)

    def sweep_pending(self) -> int:
        """Start the incidents claimed PENDING_STALE_S ago or more whose run has not started (their
        replica was killed between its answer and the start); return how many this replica took."""
        taken = self.store.take_stale_pending(now=self.clock(), older_than_s=PENDING_STALE_S,
                                              hold_s=HOLD_S)
        fresh = [p for p in taken if p.incident_id not in self._starting]
        for p in fresh:
            self._spawn(p)
        return len(fresh)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                swept = self.sweep_pending()
            except Exception as err:  # noqa: BLE001 - the database may be restarting: next round
                log.warning("intake: sweep for pending starts failed (%s)", type(err).__name__)
                continue
            if swept:
                log.info("intake: starting %d run(s) another replica left pending", swept)

    def _spawn(self, pending: PendingStart) -> None:
        if pending.incident_id in self._starting:
            return
        self._starting.add(pending.incident_id)
        task = asyncio.get_running_loop().create_task(self._start(pending),
                                                      name=f"start {pending.incident_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, pending: PendingStart) -> None:
        attempt = 0
        try:
            while True:
                try:
                    run_id = await self.starter.start(pending.playbook,  # type: ignore[arg-type]
                                                      pending.parameters, pending.incident_id)
                    break
                except Exception as err:  # the starter is a port: any failure is retried
                    self.metrics.run_start_errors.labels(pending.playbook).inc()
                    delay = self.retry_delays_s[min(attempt, len(self.retry_delays_s) - 1)]
                    log.warning("intake: starting %s for %s failed (%s); retrying in %.1fs",
                                pending.playbook, pending.incident_id, type(err).__name__, delay)
                    attempt += 1
                    await asyncio.sleep(delay)
            self.store.set_run(pending.incident_id, run_id)
            self.metrics.runs_started.labels(pending.playbook).inc()
            self.audit.write(at=self.clock(), source="intake", outcome="run-started", status=0,
                             verification="n/a", body_sha256=None, incident_key=pending.incident_id,
                             run_id=run_id, playbook=pending.playbook)
            log.info("intake: started %s run %s for incident %s", pending.playbook, run_id,
                     pending.incident_id)
        finally:
            self._starting.discard(pending.incident_id)

    async def settle(self) -> None:
        """Wait until every start under way has gone through (tests, the benchmark, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop retrying; pending incidents stay in the store and resume at the next start."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _news(kind: str, parameters: dict[str, Any], source: str) -> Any:
    """What an update tells its run, as a set member: equal for equal updates."""
    try:
        return kind, source, frozenset((k, tuple(v) if isinstance(v, list) else v)
                                       for k, v in parameters.items())
    except TypeError:  # a value that cannot be hashed (a dict from the policy)
        return kind, source, json.dumps(parameters, sort_keys=True, default=str)
