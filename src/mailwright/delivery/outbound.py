"""The outbound queue runner: one per process, any number of processes per database.

Cycle: claim due recipients -> group them by destination domain -> deliver -> record.

* **Claim with a lease.** Due `pending` recipients whose lease is free are stamped with
  ``lease_until`` and a fresh ``lease_token`` in one write transaction (PostgreSQL:
  ``SELECT ... FOR UPDATE SKIP LOCKED``, so runners on several nodes never wait for each other
  nor take the same rows; SQLite: the database's single writer lock). The runner renews the
  lease every third of ``queue_lease_seconds`` while it works, so the lease can be short: a
  crashed node's recipients are picked up by any node (itself after a restart) about one lease
  after the crash. Results are written back only where the token still matches, so a runner
  that lost its lease cannot overwrite the newer owner's outcome. Delivery is at-least-once,
  like every MTA's: a crash between the remote 250 and our commit sends that message again.
* **Routing.** Recipients at domains we host (a DSN to a local sender, a deferred local
  delivery) are delivered straight into the mailstore. Others go to the domain's MX hosts
  (``mx.destinations``) over SMTP with opportunistic STARTTLS: offered -> used, certificate
  not verified (Postfix's ``smtp_tls_security_level = may``); a failed handshake is retried in
  plain text on a new connection, as Postfix does. One connection per destination is reused
  for all of its messages (up to :data:`CONNECTIONS_PER_DESTINATION` in parallel when many are
  waiting), and per-recipient replies are kept.
* **Outcomes.** 2xx: sent. 5xx: failed + DSN. 4xx, network and DNS trouble: retried with
  exponential backoff (``queue_retry_base_seconds`` doubling up to
  ``queue_retry_max_seconds``) until ``queue_lifetime_seconds`` after queueing, then failed
  with 4.4.7 + DSN. A message whose recipients are all done is deleted with its blob.
* **Delay notice.** When a retry is scheduled for a message queued at least
  ``queue_delay_notice_after`` ago (default 4 h, 0 = off; why 4 h: `config.Settings`), its
  sender gets one RFC 3464 ``Action: delayed`` DSN naming the recipients that attempt deferred
  (``Will-Retry-Until`` = the message's expiry). "One" is a database fact, not a per-process
  memory: the DSN is queued in the same transaction that sets ``queue_messages.delay_notice_at``
  with ``... WHERE delay_notice_at IS NULL``, so two runners (or a restart) never send a second
  one. The message itself stays queued and is retried, delivered or bounced as before. No
  notice for a null sender, a DSN, a held (suspended) tenant's mail, nor at expiry (that one
  bounces instead).
* **Suspended tenants.** Their queued mail is held, not sent and not expired: each claim
  pushes it back by one retry base without counting an attempt. Once the tenant is active
  again, mail older than its lifetime gets one last attempt before it bounces (Postfix's hold
  queue behaves the same way). Mail of a terminated (or deleted) tenant is dropped without a
  bounce.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiosmtplib
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailwright.directory import routing
from mailwright.directory.errors import Invalid
from mailwright.directory.names import normalize_address
from mailwright.directory.tenants import tenant_is_active
from mailwright.mailstore import messages, quota
from mailwright.mailstore.changes import remove_blob_files
from mailwright.services import Services
from mailwright.storage.models import Blob, Domain, QueuedMessage, QueuedRecipient, Tenant, utcnow

from . import dsn as dsn_mod
from .mx import DestinationError, Hop, destinations
from .queue import drop_many, wakeup_event
from .srs import is_srs, srs_reverse, srs_secret

__all__ = ["QueueRunner", "start_runner"]

log = logging.getLogger(__name__)

BATCH = 500
MAX_CYCLES = 4  # claims being worked on at once by one runner
RECORD_EVERY = 0.5  # seconds between commits of finished deliveries within a cycle
CONNECTIONS_PER_DESTINATION = 4
MESSAGES_PER_CONNECTION = 100


@dataclass
class Rcpt:
    id: int
    rcpt: str
    domain: str
    attempts: int


@dataclass
class Job:
    """One queued message and the recipients of it this cycle claimed."""

    id: int
    mail_from: str
    blob_hash: str
    tenant_id: str | None
    kind: str
    created_at: datetime
    expires_at: datetime
    delay_notice_at: datetime | None = None
    rcpts: list[Rcpt] = field(default_factory=list)
    orphan: bool = False  # its tenant was terminated: dropped, never bounced


@dataclass(frozen=True)
class Outcome:
    kind: str  # sent | temp | perm | hold
    status: str  # enhanced status code
    text: str  # diagnostic ("smtp; 550 5.1.1 ..." or ours)
    remote_mta: str | None = None


class _Broken(Exception):
    """The connection died mid-conversation; everything not yet answered is retried."""


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # opportunistic: encryption against passive snooping only
    return ctx


def _reply(code: int, message: str, host: str | None) -> Outcome:
    text = f"smtp; {code} {' '.join(str(message).split())}"
    status = dsn_mod.status_from_reply(code, message)
    if 200 <= code < 300:
        return Outcome("sent", "2.0.0", text, host)
    return Outcome("perm" if code >= 500 else "temp", status, text, host)


class QueueRunner:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._tls = _tls_context()
        # Destinations delivered to at once, across overlapping cycles.
        self._sem = asyncio.Semaphore(max(1, svc.settings.outbound_concurrency))

    # -- loop ---------------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Claim and deliver until cancelled; up to MAX_CYCLES cycles overlap, so one slow
        destination (timeouts, a tarpit) never holds back mail for the others."""
        wake = wakeup_event(self.svc)
        running: set[asyncio.Task[int]] = set()
        try:
            while True:
                wake.clear()
                if len(running) < MAX_CYCLES:
                    token = uuid.uuid4().hex
                    try:
                        jobs = await self._claim(token)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("claiming queued mail failed")
                        jobs = []
                        await asyncio.sleep(1)
                    if jobs:
                        task = asyncio.create_task(self._guarded_cycle(token, jobs), name="outbound-cycle")
                        running.add(task)
                        task.add_done_callback(running.discard)
                        continue
                waker = asyncio.create_task(wake.wait())
                try:
                    await asyncio.wait([waker, *running], timeout=self.svc.settings.queue_poll_seconds,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waker.cancel()
        finally:
            for task in list(running):
                task.cancel()

    async def run_once(self) -> int:
        """One cycle, start to end; returns how many recipients it handled."""
        token = uuid.uuid4().hex
        jobs = await self._claim(token)
        if not jobs:
            return 0
        return await self._guarded_cycle(token, jobs)

    async def _guarded_cycle(self, token: str, jobs: list[Job]) -> int:
        renew = asyncio.create_task(self._renew(token), name="outbound-lease")
        try:
            return await self._cycle(token, jobs)
        except asyncio.CancelledError:
            raise
        except Exception:  # the leases run out and another cycle retries the recipients
            log.exception("outbound queue cycle failed")
            return 0
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew

    async def _cycle(self, token: str, jobs: list[Job]) -> int:
        outcomes: dict[int, Outcome] = {}
        held, gone = await self._tenant_states(jobs)
        for job in jobs:
            if job.tenant_id in gone:
                job.orphan = True
                for r in job.rcpts:
                    outcomes[r.id] = Outcome("perm", "5.3.0", "the sending tenant no longer exists")
            elif job.tenant_id in held:
                for r in job.rcpts:
                    outcomes[r.id] = Outcome("hold", "4.3.2", "tenant suspended: held")
        active = [j for j in jobs if j.tenant_id not in held and j.tenant_id not in gone]
        blobs: dict[str, bytes | None] = {}
        for job in active:
            if job.blob_hash not in blobs:
                try:
                    blobs[job.blob_hash] = await self.svc.blobs.get(job.blob_hash)
                except (OSError, FileNotFoundError):
                    log.error("queued message %s: blob %s is missing", job.id, job.blob_hash)
                    blobs[job.blob_hash] = None
        by_domain: dict[str, list[tuple[Job, list[Rcpt]]]] = {}
        for job in active:
            if blobs.get(job.blob_hash) is None:
                for r in job.rcpts:
                    outcomes[r.id] = Outcome("perm", "5.3.0", "message content lost from the queue")
                continue
            per: dict[str, list[Rcpt]] = {}
            for r in job.rcpts:
                per.setdefault(r.domain, []).append(r)
            for dom, rs in per.items():
                by_domain.setdefault(dom, []).append((job, rs))
        local_domains = await self._hosted(list(by_domain))
        sem = self._sem

        async def one(dom: str, work: list[tuple[Job, list[Rcpt]]]) -> None:
            async with sem:
                try:
                    if dom in local_domains:
                        res = await self._deliver_local(work, blobs, outcomes)
                    else:
                        res = await self._deliver_remote(dom, work, blobs, outcomes)
                except Exception as exc:  # a bug must not lose mail: retry later
                    log.exception("delivery to %s failed", dom)
                    res = {r.id: Outcome("temp", "4.3.0", f"internal error: {exc!r}") for _, rs in work for r in rs}
                outcomes.update(res)

        # Outcomes are committed as messages complete (every RECORD_EVERY seconds), not only at
        # the end of the cycle: a crash then repeats at most the last moment's deliveries.
        recorded: set[int] = set()
        rec_lock = asyncio.Lock()

        async def record(everything: bool) -> None:
            async with rec_lock:
                ready = [j for j in jobs if j.id not in recorded
                         and (everything or all(r.id in outcomes for r in j.rcpts))]
                if ready:
                    await self._record(token, ready, outcomes, blobs)
                    recorded.update(j.id for j in ready)

        async def recorder() -> None:
            while True:
                await asyncio.sleep(RECORD_EVERY)
                try:
                    await record(False)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("recording outbound results failed; retrying at the end of the cycle")

        rec_task = asyncio.create_task(recorder(), name="outbound-record")
        try:
            await asyncio.gather(*(one(d, w) for d, w in by_domain.items()))
        finally:
            rec_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rec_task
        await record(True)
        return sum(len(j.rcpts) for j in jobs)

    # -- claim --------------------------------------------------------------------------------

    async def _claim(self, token: str) -> list[Job]:
        now = utcnow()
        due = (
            select(QueuedRecipient.id)
            .where(QueuedRecipient.status == "pending", QueuedRecipient.next_attempt_at <= now,
                   or_(QueuedRecipient.lease_until.is_(None), QueuedRecipient.lease_until < now))
            .order_by(QueuedRecipient.next_attempt_at, QueuedRecipient.id)
        )
        async with self.svc.db.read() as s:
            if (await s.execute(due.limit(1))).first() is None:
                return []
        async with self.svc.db.write() as s:
            q = due.limit(BATCH)
            if not self.svc.db.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            ids = list((await s.execute(q)).scalars())
            if not ids:
                return []
            await s.execute(update(QueuedRecipient).where(QueuedRecipient.id.in_(ids))
                            .values(lease_until=now + self._lease(), lease_token=token))
            rows = (await s.execute(
                select(QueuedRecipient, QueuedMessage)
                .join(QueuedMessage, QueuedMessage.id == QueuedRecipient.queue_id)
                .where(QueuedRecipient.id.in_(ids))
                .order_by(QueuedRecipient.queue_id, QueuedRecipient.id)
            )).all()
        jobs: dict[int, Job] = {}
        for r, m in rows:
            job = jobs.get(m.id)
            if job is None:
                job = jobs[m.id] = Job(m.id, m.mail_from, m.blob_hash, m.tenant_id, m.kind, m.created_at,
                                       m.expires_at, m.delay_notice_at)
            job.rcpts.append(Rcpt(r.id, r.rcpt, r.domain, r.attempts))
        return list(jobs.values())

    async def _tenant_states(self, jobs: list[Job]) -> tuple[set[str | None], set[str | None]]:
        """(held, gone): tenants (or a reseller above them) suspended, and tenants terminated or
        deleted, whose mail is dropped without a bounce (there is nobody left to tell)."""
        held: set[str | None] = set()
        gone: set[str | None] = set()
        async with self.svc.db.read() as s:
            for tid in {j.tenant_id for j in jobs if j.tenant_id}:
                if await tenant_is_active(s, tid):
                    continue
                cur: str | None = tid
                state = "held"
                for _ in range(8):
                    if cur is None:
                        break
                    t = await s.get(Tenant, cur)
                    if t is None or t.status == "terminated":
                        state = "gone"
                        break
                    cur = t.parent_id
                (gone if state == "gone" else held).add(tid)
        return held, gone

    async def _hosted(self, domains: list[str]) -> set[str]:
        if not domains:
            return set()
        async with self.svc.db.read() as s:
            # a self-service custom domain pending verification is not ours (directory/routing.py)
            return set((await s.execute(select(Domain.name).where(
                Domain.name.in_(domains), or_(Domain.verified.is_(True), Domain.verify_token.is_(None))))).scalars())

    # -- local --------------------------------------------------------------------------------

    async def _deliver_local(self, work: list[tuple[Job, list[Rcpt]]], blobs: dict[str, bytes | None],
                             sink: dict[int, Outcome]) -> dict[int, Outcome]:
        out: dict[int, Outcome] = {}
        host = self.svc.settings.hostname
        for job, rcpts in work:
            raw = blobs[job.blob_hash]
            assert raw is not None
            targets: list[messages.Target] = []
            delivered: list[int] = []
            async with self.svc.db.read() as s:
                for r in rcpts:
                    try:
                        addr = normalize_address(r.rcpt)
                    except Invalid:
                        out[r.id] = Outcome("perm", "5.1.3", "bad recipient address syntax", host)
                        continue
                    route = await routing.resolve(s, addr)
                    if route.kind in ("unknown", "relay"):
                        out[r.id] = Outcome("perm", "5.1.1", f"<{addr}>: user unknown", host)
                        continue
                    if route.kind != "local":
                        out[r.id] = Outcome("temp", "4.3.2", f"<{addr}>: recipient temporarily unavailable", host)
                        continue
                    full = None
                    for pid in route.mailboxes:
                        qc = await quota.check(s, pid, len(raw))
                        if qc.ok:
                            if all(t.principal_id != pid for t in targets):
                                targets.append(messages.Target(principal_id=pid))
                        else:
                            full = qc
                    if full is not None and not any(t.principal_id in route.mailboxes for t in targets):
                        out[r.id] = (Outcome("perm", "5.2.2", "mailbox quota exceeded", host) if full.too_big
                                     else Outcome("temp", "4.2.2", "mailbox full", host))
                        continue
                    delivered.append(r.id)
            if targets:
                await messages.deliver(self.svc, raw, targets, mail_from=job.mail_from)
            for rid in delivered:
                out[rid] = Outcome("sent", "2.0.0", "delivered locally", host)
            sink.update({r.id: out[r.id] for r in rcpts if r.id in out})
        return out

    # -- remote -------------------------------------------------------------------------------

    async def _deliver_remote(self, domain: str, work: list[tuple[Job, list[Rcpt]]],
                              blobs: dict[str, bytes | None], sink: dict[int, Outcome]) -> dict[int, Outcome]:
        try:
            hops = await destinations(self.svc, domain)
        except DestinationError as exc:
            kind = "perm" if exc.permanent else "temp"
            return {r.id: Outcome(kind, exc.status, str(exc)) for _, rs in work for r in rs}
        n_conn = min(CONNECTIONS_PER_DESTINATION, max(1, math.ceil(len(work) / MESSAGES_PER_CONNECTION)))
        slices = [work[i::n_conn] for i in range(n_conn)]
        results = await asyncio.gather(*(self._over_one_connection(hops, sl, blobs, sink) for sl in slices))
        out: dict[int, Outcome] = {}
        for res in results:
            out.update(res)
        return out

    async def _connect(self, hop: Hop, tls: bool) -> aiosmtplib.SMTP:
        timeout = self.svc.settings.outbound_timeout_seconds
        smtp = aiosmtplib.SMTP(hostname=hop.address, port=hop.port, local_hostname=self.svc.settings.hostname,
                               timeout=timeout, start_tls=False, validate_certs=False)
        await smtp.connect()
        try:
            try:
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                await smtp.helo()
            if tls and smtp.supports_extension("starttls"):
                await smtp.starttls(server_hostname=hop.host, tls_context=self._tls)
                await smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp

    async def _open(self, hops: Sequence[Hop]) -> tuple[aiosmtplib.SMTP | None, Hop | None, str]:
        """Connect to the first hop that answers; returns (client, hop, last error)."""
        last = "no destination"
        for hop in hops:
            for tls in (True, False):
                try:
                    return await self._connect(hop, tls), hop, ""
                except (TimeoutError, ssl.SSLError, aiosmtplib.SMTPException, OSError) as exc:
                    last = f"{hop.host}[{hop.address}]:{hop.port}: {exc}"
                    # Retry without TLS only when TLS itself failed.
                    if not tls or not isinstance(exc, ssl.SSLError | aiosmtplib.SMTPException) \
                            or isinstance(exc, aiosmtplib.SMTPConnectError):
                        break
        return None, None, last

    async def _over_one_connection(self, hops: Sequence[Hop], work: list[tuple[Job, list[Rcpt]]],
                                   blobs: dict[str, bytes | None], sink: dict[int, Outcome]) -> dict[int, Outcome]:
        out: dict[int, Outcome] = {}
        smtp, hop, error = await self._open(hops)
        if smtp is None or hop is None:
            return {r.id: Outcome("temp", "4.4.1", f"connect failed: {error}") for _, rs in work for r in rs}
        try:
            for i, (job, rcpts) in enumerate(work):
                raw = blobs[job.blob_hash]
                assert raw is not None
                try:
                    res = await self._transaction(smtp, hop, job, rcpts, raw)
                    out.update(res)
                    sink.update(res)
                except (TimeoutError, _Broken, aiosmtplib.SMTPException, OSError) as exc:
                    text = f"lost connection with {hop.host}[{hop.address}]: {exc}"
                    for _, rs in work[i:]:
                        for r in rs:
                            out.setdefault(r.id, Outcome("temp", "4.4.2", text, hop.host))
                    return out
        finally:
            with contextlib.suppress(Exception):
                await smtp.quit()
            smtp.close()
        return out

    async def _transaction(self, smtp: aiosmtplib.SMTP, hop: Hop, job: Job, rcpts: list[Rcpt],
                           raw: bytes) -> dict[int, Outcome]:
        out: dict[int, Outcome] = {}
        opts: list[str] = []
        if smtp.supports_extension("size"):
            opts.append(f"SIZE={len(raw)}")
        if any(b > 127 for b in raw) and smtp.supports_extension("8bitmime"):
            opts.append("BODY=8BITMIME")
        utf8 = not (job.mail_from.isascii() and all(r.rcpt.isascii() for r in rcpts))
        if utf8:
            if not smtp.supports_extension("smtputf8"):
                return {r.id: Outcome("perm", "5.6.7", "the destination does not support SMTPUTF8", hop.host)
                        for r in rcpts}
            opts.append("SMTPUTF8")
        enc = "utf-8" if utf8 else "ascii"
        try:
            await smtp.mail(job.mail_from, options=opts, encoding=enc)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421 or isinstance(exc, aiosmtplib.SMTPServerDisconnected):
                raise _Broken(str(exc)) from exc
            res = _reply(exc.code, exc.message, hop.host)
            await self._rset(smtp)
            return {r.id: res for r in rcpts}
        accepted: list[Rcpt] = []
        for r in rcpts:
            try:
                await smtp.rcpt(r.rcpt, encoding=enc)
                accepted.append(r)
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 421:
                    raise _Broken(str(exc)) from exc
                out[r.id] = _reply(exc.code, exc.message, hop.host)
        if not accepted:
            await self._rset(smtp)
            return out
        try:
            resp = await smtp.data(raw)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:
                raise _Broken(str(exc)) from exc
            res = _reply(exc.code, exc.message, hop.host)
            for r in accepted:
                out[r.id] = res
            return out
        ok = _reply(resp.code, resp.message, hop.host)
        for r in accepted:
            out[r.id] = ok
        return out

    @staticmethod
    async def _rset(smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.rset()
        except aiosmtplib.SMTPResponseException as exc:
            raise _Broken(str(exc)) from exc

    # -- record -------------------------------------------------------------------------------

    def _lease(self) -> timedelta:
        return timedelta(seconds=max(1.0, self.svc.settings.queue_lease_seconds))

    async def _renew(self, token: str) -> None:
        """Keep this cycle's claim alive while it works (a third of the lease at a time)."""
        period = self._lease().total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            try:
                async with self.svc.db.write() as s:
                    await s.execute(update(QueuedRecipient).where(QueuedRecipient.lease_token == token)
                                    .values(lease_until=utcnow() + self._lease()))
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: the cycle's own writes will fail too
                log.warning("could not renew the outbound queue lease", exc_info=True)

    def _backoff(self, attempts: int) -> timedelta:
        s = self.svc.settings
        delay = min(s.queue_retry_base_seconds * (2 ** max(0, attempts - 1)), s.queue_retry_max_seconds)
        return timedelta(seconds=delay)

    async def _sign_dsn(self, raw: bytes) -> bytes:
        """DKIM-sign a DSN (From: MAILER-DAEMON@hostname) with the keys of the host name's
        domain or its nearest hosted parent: relaxed DMARC alignment then passes at receivers
        even when the sender is <> and SPF can only check the HELO name."""
        from .submit import sign

        labels = self.svc.settings.hostname.lower().rstrip(".").split(".")
        for i in range(len(labels) - 1):
            signed = await sign(self.svc, raw, ".".join(labels[i:]))
            if signed is not raw:
                return signed
        return raw

    def _dsn_recipient(self, job: Job) -> str | None:
        if not job.mail_from or job.kind == "dsn" or job.orphan:
            return None  # never bounce a bounce (nor mail of a tenant that is gone)
        sender = job.mail_from
        if is_srs(sender):
            back = srs_reverse(sender, srs_secret(self.svc))
            if back is None:
                log.warning("queued message %s: cannot reverse SRS sender %s, no DSN", job.id, sender)
                return None
            sender = back
        return sender

    async def _record(self, token: str, jobs: list[Job], outcomes: dict[int, Outcome],
                      blobs: dict[str, bytes | None]) -> None:
        now = utcnow()
        final: dict[int, Outcome] = {}
        for job in jobs:
            for r in job.rcpts:
                o = outcomes.get(r.id) or Outcome("temp", "4.3.0", "not attempted")
                if o.kind == "temp" and now >= job.expires_at:
                    o = Outcome("perm", "4.4.7", f"delivery time expired; last error: {o.text}", o.remote_mta)
                final[r.id] = o
        # Build DSNs before the transaction (their blobs must be durable before they are referenced).
        dsns: dict[int, tuple[str, str, int]] = {}  # job id -> (recipient, blob hash, size)
        for job in jobs:
            failed = [dsn_mod.Failure(r.rcpt, final[r.id].status, final[r.id].text, final[r.id].remote_mta)
                      for r in job.rcpts if final[r.id].kind == "perm"]
            to = self._dsn_recipient(job) if failed else None
            if to is None:
                continue
            raw = dsn_mod.build_dsn(reporting_mta=self.svc.settings.hostname, sender=to,
                                    original=blobs.get(job.blob_hash) or b"", failures=failed,
                                    arrival=job.created_at, queue_id=job.id)
            raw = await self._sign_dsn(raw)
            dsns[job.id] = (to, await self.svc.blobs.put(raw), len(raw))
        notices = await self._build_delay_notices(jobs, final, blobs, now)
        # Recipients sharing an outcome are updated together: a batch of 500 is a handful of
        # statements, not thousands (each one is a round trip to the database).
        groups: dict[tuple[str, str, str | None, int], list[int]] = {}
        for job in jobs:
            for r in job.rcpts:
                o = final[r.id]
                groups.setdefault((o.kind, o.text, o.remote_mta, r.attempts), []).append(r.id)
        all_ids = [r.id for job in jobs for r in job.rcpts]
        freed: list[str] = []
        unused: list[str] = []
        new_dsn = False
        async with self.svc.db.write() as s:
            owned: set[int] = set()
            for chunk in _chunks(all_ids):
                owned |= set((await s.execute(select(QueuedRecipient.id).where(
                    QueuedRecipient.id.in_(chunk), QueuedRecipient.lease_token == token))).scalars())
            for (kind, text, remote_mta, attempts), ids in groups.items():
                ids = [i for i in ids if i in owned]
                if not ids:
                    continue
                if kind == "hold":
                    values: dict[str, object] = {"next_attempt_at": now + self._backoff(1), "last_error": text}
                elif kind == "sent":
                    values = {"status": "sent", "attempts": attempts + 1, "last_error": None}
                elif kind == "perm":
                    values = {"status": "failed", "attempts": attempts + 1, "last_error": text}
                else:
                    values = {"attempts": attempts + 1, "last_error": text,
                              "next_attempt_at": now + self._backoff(attempts + 1)}
                values.update(lease_until=None, lease_token=None, remote_mta=remote_mta, updated_at=now)
                for chunk in _chunks(ids):
                    await s.execute(update(QueuedRecipient).where(
                        QueuedRecipient.id.in_(chunk), QueuedRecipient.lease_token == token).values(**values))
            for job in jobs:
                failed_here = any(final[r.id].kind == "perm" and r.id in owned for r in job.rcpts)
                if not (failed_here and job.id in dsns):
                    continue
                to, digest, size = dsns[job.id]
                await self._queue_dsn(s, job, to, digest, size, now)
                await s.execute(update(QueuedRecipient).where(
                    QueuedRecipient.queue_id == job.id, QueuedRecipient.status == "failed"
                ).values(dsn_sent=True))
                new_dsn = True
            for job in jobs:
                if job.id not in notices:
                    continue
                if await self._claim_delay_notice(s, job, notices[job.id], final, owned, now):
                    new_dsn = True
                else:
                    unused.append(notices[job.id][1])  # unique content (Message-ID): nobody else uses it
            job_ids = [j.id for j in jobs]
            busy: set[int] = set()
            for chunk in _chunks(job_ids):
                busy |= set((await s.execute(select(QueuedRecipient.queue_id).where(
                    QueuedRecipient.queue_id.in_(chunk), QueuedRecipient.status == "pending"
                ).distinct())).scalars())
            done = [j for j in jobs if j.id not in busy]
            if done:
                freed = await drop_many(s, [(j.id, j.blob_hash) for j in done])
        remove_blob_files(self.svc, freed + unused)
        if new_dsn:
            wakeup_event(self.svc).set()


    async def _queue_dsn(self, s: AsyncSession, job: Job, to: str, digest: str, size: int, now: datetime) -> None:
        """Queue a DSN blob (already durable) to `to` in the caller's transaction."""
        if await s.get(Blob, digest) is None:
            s.add(Blob(hash=digest, size=size))
        dsn = QueuedMessage(tenant_id=job.tenant_id, principal_id=None, blob_hash=digest, size=size,
                            mail_from="", kind="dsn", created_at=now,
                            expires_at=now + timedelta(seconds=self.svc.settings.queue_lifetime_seconds))
        s.add(dsn)
        await s.flush()
        s.add(QueuedRecipient(queue_id=dsn.id, rcpt=to, domain=to.rpartition("@")[2].lower(),
                              status="pending", attempts=0, next_attempt_at=now, updated_at=now))

    def _delay_notice_due(self, job: Job, now: datetime) -> bool:
        after = self.svc.settings.queue_delay_notice_after
        return (after > 0 and job.delay_notice_at is None and not job.orphan
                and now - job.created_at >= timedelta(seconds=after))

    async def _build_delay_notices(self, jobs: list[Job], final: dict[int, Outcome],
                                   blobs: dict[str, bytes | None], now: datetime
                                   ) -> dict[int, tuple[str, str, int, list[int]]]:
        """Delay DSNs for messages this cycle deferred past the notice time, written (durable)
        before the transaction that queues them: {job id: (recipient, blob, size, rcpt ids)}."""
        out: dict[int, tuple[str, str, int, list[int]]] = {}
        for job in jobs:
            if not self._delay_notice_due(job, now):
                continue
            late = [r for r in job.rcpts if final[r.id].kind == "temp"]
            to = self._dsn_recipient(job) if late else None
            if to is None:
                continue
            delayed = [dsn_mod.Failure(r.rcpt, final[r.id].status, final[r.id].text, final[r.id].remote_mta)
                       for r in late]
            raw = dsn_mod.build_dsn(reporting_mta=self.svc.settings.hostname, sender=to,
                                    original=blobs.get(job.blob_hash) or b"", failures=delayed,
                                    arrival=job.created_at, queue_id=job.id, action=dsn_mod.DELAYED,
                                    will_retry_until=job.expires_at)
            raw = await self._sign_dsn(raw)
            out[job.id] = (to, await self.svc.blobs.put(raw), len(raw), [r.id for r in late])
        return out

    async def _claim_delay_notice(self, s: AsyncSession, job: Job, notice: tuple[str, str, int, list[int]],
                                  final: dict[int, Outcome], owned: set[int], now: datetime) -> bool:
        """Queue the delay DSN unless this message already has one (another runner, an earlier
        cycle): the conditional update is the once-only guard, in the transaction that queues it."""
        to, digest, size, rcpt_ids = notice
        if not any(i in owned and final[i].kind == "temp" for i in rcpt_ids):
            return False  # we lost the lease: the new owner decides
        res = await s.execute(update(QueuedMessage).where(
            QueuedMessage.id == job.id, QueuedMessage.delay_notice_at.is_(None)).values(delay_notice_at=now))
        if getattr(res, "rowcount", 0) != 1:
            return False
        await self._queue_dsn(s, job, to, digest, size, now)
        log.info("queued message %s: delay notice to %s", job.id, to)
        return True


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    """IN-lists of bounded length (SQLite limits bound parameters per statement)."""
    return [ids[i : i + size] for i in range(0, len(ids), size)]


async def start_runner(svc: Services) -> asyncio.Task[None]:
    runner = QueueRunner(svc)
    return asyncio.create_task(runner.run_forever(), name="outbound-queue")
