"""Job records: reads, the transitions of a single job, and the bookkeeping the sweeper asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from jobs.job import Job, JobStatus
from jobs.settings import OwnerLimits

from .base import RecordsBase, encode, job_of, now, plain_id, s_

STATUSES = tuple(s.value for s in JobStatus)


class JobRecords(RecordsBase):
    # -- reads ----------------------------------------------------------------------------------------
    def get(self, job_id: str) -> Optional[Job]:
        return job_of(self.r.hgetall(self._k.job(job_id)))

    def get_owned(self, job_id: str, owner: str) -> Optional[Job]:
        """The job if ``owner`` owns it (another owner's id reads as an unknown one)."""
        if not plain_id(job_id):
            return None
        job = self.get(job_id)
        return job if job is not None and job.owner == owner else None

    def get_many(self, ids: list[str]) -> list[Optional[Job]]:
        return self._jobs(ids)

    def list(self, owner: str, *, status: Optional[str] = None, limit: int = 20,
             cursor: Optional[int] = None) -> tuple[list[Job], Optional[int]]:
        """The owner's jobs, newest first; ``cursor`` is the sequence number to continue below."""
        key = self._k.owner_jobs(owner)
        top = f"({cursor}" if cursor is not None else "+inf"
        out: list[Job] = []
        batch = max(limit, 50) if status else limit + 1
        while True:
            pairs = self.r.zrevrangebyscore(key, top, "-inf", start=0, num=batch, withscores=True)
            if not pairs:
                break
            for (member, score), job in zip(pairs, self._jobs([s_(m) for m, _ in pairs])):
                if job is None:
                    continue
                if status and job.status.value != status:
                    top = f"({int(score)}"
                    continue
                if len(out) == limit:
                    return out, out[-1].seq
                out.append(job)
                top = f"({int(score)}"
            if len(pairs) < batch:
                break
        return out, None

    def idempotent_job(self, owner: str, key_hash: str) -> Optional[tuple[str, str]]:
        """(job id, body hash) stored under an owner's idempotency key, if any."""
        v = self.r.get(self._k.idempotency(owner, key_hash))
        if not v:
            return None
        job_id, _, body = s_(v).partition(" ")
        return job_id, body

    def running_ids(self) -> list[str]:
        return sorted(s_(m) for m in self.r.smembers(self._k.running))

    def lease_holder(self, job_id: str) -> Optional[str]:
        v = self.r.get(self._k.lease(job_id))
        return s_(v) if v else None

    def status_counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for k, v in self.r.hgetall(self._k.stats).items():
            counts[s_(k)] = int(v)
        return counts

    # -- transitions (each one script of jobs.records.scripts) ----------------------------------------
    def create(self, job: Job, limits: OwnerLimits, idempotency: tuple[str, str] | None = None,
               idempotency_ttl: int = 86400) -> tuple[int, object]:
        """Write a queued record into its owner's line (ADMIT lets it onto its queue). Returns
        (1, seq); (0, :class:`OverLimit`) when the owner's unfinished work with this job exceeds
        a limit; (2, "<job id> <body hash>") when the idempotency key (key hash, body hash) was
        used before."""
        key_hash, body_hash = idempotency or ("", "")
        keys = self._create_keys(job, key_hash) + [self._k.line(job.queue, job.owner),
                                                   self._k.turns(job.queue)]
        code, val = self._create(keys=keys, args=[limits.words(1, job.evaluations), job.id,
                                                  body_hash, idempotency_ttl, now(), job.owner]
                                 + encode(_new_fields(job)))
        return created(code, val)

    def _create_keys(self, job: Job, key_hash: str) -> list[str]:
        """KEYS[1..8] of every creating script."""
        return [self._k.job(job.id), self._k.owner_jobs(job.owner),
                self._k.owner_active(job.owner), self._k.seq, self._k.stats, self._k.queued,
                self._k.idempotency(job.owner, key_hash or "-"), self._k.owners]

    def admit(self, queue: str, rq_key: str, window: int, max_lines: int = 64
              ) -> list[tuple[str, str, int]]:
        """ADMIT: let waiting jobs onto ``queue`` (RQ's list ``rq_key``), owners in turn, until
        ``window`` entries wait there. Returns (job id, queue entry id, timeout) of each, to be
        enqueued in that order (they are in the outbox meanwhile)."""
        out = self._admit(keys=[self._k.turns(queue), rq_key, self._k.queued, self._k.seq,
                                self._k.stats],
                          args=[window, now(), self._k.line_prefix(queue), self._k.job(""),
                                max_lines])
        return [(s_(out[i]), s_(out[i + 1]), int(out[i + 2] or 60))
                for i in range(0, len(out), 3)]

    def waiting_in_line(self, queue: str, owner: str) -> int:
        """Entries of the owner's line for ``queue`` (a series counts once)."""
        return int(self.r.llen(self._k.line(queue, owner)))

    def start(self, job_id: str, worker: str, device: str, lease_ttl: int,
              rq_id: str = "") -> tuple[str, int]:
        st, attempt = self._start(keys=[self._k.job(job_id), self._k.running, self._k.lease(job_id),
                                        self._k.stats, self._k.queued],
                                  args=[worker, device, now(), lease_ttl, job_id, rq_id])
        return s_(st), int(attempt)

    def renew(self, job_id: str, worker: str, attempt: int, lease_ttl: int,
              progress: Optional[float] = None) -> str:
        p = "" if progress is None else f"{progress:.4f}"
        return s_(self._renew(keys=[self._k.job(job_id), self._k.lease(job_id)],
                              args=[worker, attempt, lease_ttl, p]))

    def finish(self, job_id: str, owner: str, worker: str, attempt: int, outcome: str,
               fields: dict | None = None) -> str:
        keys = [self._k.job(job_id), self._k.running, self._k.lease(job_id),
                self._k.owner_active(owner), self._k.stats, self._k.ended]
        return s_(self._finish(keys=keys, args=[worker, attempt, now(), outcome, job_id]
                               + encode(fields or {})))

    def cancel(self, job_id: str, owner: str, client=None) -> str:
        """CANCEL (``client``: a pipeline, whose execute() then gives the outcome)."""
        out = self._cancel(keys=[self._k.job(job_id), self._k.owner_active(owner), self._k.stats,
                                 self._k.queued, self._k.ended],
                           args=[now(), job_id], client=client)
        return out if client is not None else s_(out)

    def requeue(self, job_id: str, owner: str, attempt: int, rq_id: str, reason: str) -> str:
        keys = [self._k.job(job_id), self._k.running, self._k.lease(job_id),
                self._k.owner_active(owner), self._k.stats, self._k.queued, self._k.ended]
        return s_(self._requeue(keys=keys, args=[attempt, now(), job_id, rq_id, reason]))

    def reenqueue(self, job_id: str, old_rq_id: str, new_rq_id: str) -> bool:
        """Give a queued job found on no queue a new queue entry id (then enqueue it)."""
        out = self._reenqueue(keys=[self._k.job(job_id), self._k.queued],
                              args=[old_rq_id, new_rq_id, now(), job_id])
        return s_(out) == "ok"

    def fail_queued(self, job_id: str, owner: str, etype: str, message: str) -> bool:
        """Fail a job that is still queued (a worker that starts it first wins)."""
        keys = [self._k.job(job_id), self._k.owner_active(owner), self._k.stats, self._k.queued,
                self._k.ended]
        return s_(self._fail_queued(keys=keys, args=[now(), job_id, etype, message])) == "failed"

    def forget(self, job_id: str, owner: str) -> str:
        """Remove an ended job's record and indexes; returns the status it had ('live' if it is
        queued or running again)."""
        keys = [self._k.job(job_id), self._k.traces(job_id), self._k.owner_jobs(owner),
                self._k.ended, self._k.owner_active(owner), self._k.stats,
                self._k.children(job_id), self._k.settled(job_id), self._k.partial(job_id),
                self._k.live(job_id), self._k.template(job_id)]
        return s_(self._forget(keys=keys, args=[job_id]))

    # -- traces of a job ------------------------------------------------------------------------------
    def trace_jobs(self, job_id: str) -> dict[str, str]:
        return {s_(k): s_(v) for k, v in self.r.hgetall(self._k.traces(job_id)).items()}

    def set_trace_jobs(self, job_id: str, keys: Iterable[str], trace_job: str) -> None:
        """``keys``: "slow,fast" of a job's pixels, "n:slow,fast" of image n's of a series."""
        mapping = {key: trace_job for key in keys}
        if mapping:
            self.r.hset(self._k.traces(job_id), mapping=mapping)

    def trace_lock(self, job_id: str, timeout_s: float = 30, wait_s: float = 10):
        """A lock held while the trace jobs of ``job_id`` are looked up and created (two requests
        for the same pixel must not make two trace jobs)."""
        return self.r.lock(f"{self._k.traces(job_id)}:lock", timeout=timeout_s,
                           blocking_timeout=wait_s)

    # -- the sweeper's bookkeeping ----------------------------------------------------------------------
    def acquire_sweep(self, name: str, ttl_s: int) -> bool:
        """Take the deployment's sweeper lock for ``ttl_s`` (False: another process sweeps)."""
        return bool(self.r.set(self._k.sweeper_lock, name, nx=True, ex=ttl_s))

    def release_sweep(self, name: str) -> None:
        # release only our own lock (a pass longer than the TTL may have lost it)
        if self.r.get(self._k.sweeper_lock) == name.encode():
            self.r.delete(self._k.sweeper_lock)

    def retention_due(self, interval_s: float) -> bool:
        """True once per ``interval_s`` in the whole deployment."""
        return bool(self.r.set(self._k.retention, "1", nx=True,
                               px=max(1, int(interval_s * 1000))))

    def drop_running(self, job_id: str) -> None:
        """A running-set member without a record."""
        self.r.srem(self._k.running, job_id)

    def queued_since(self, before: float, limit: int = 500) -> list[str]:
        """Jobs put on a queue before ``before`` and still in the outbox (oldest first)."""
        return [s_(m) for m in self.r.zrangebyscore(self._k.queued, "-inf", before, start=0,
                                                    num=limit)]

    def queued_jobs(self, limit: int = 5000) -> list[Job]:
        """The jobs in the outbox (queued ones), oldest first."""
        ids = [s_(m) for m in self.r.zrange(self._k.queued, 0, limit - 1)]
        return [j for j in self._jobs(ids) if j is not None]

    def leave_outbox(self, job_id: str) -> None:
        self.r.zrem(self._k.queued, job_id)

    def look_again_later(self, job_ids: Iterable[str]) -> None:
        """Jobs waiting in line on their queue: the outbox looks at them a lease time later (a
        job started meanwhile stays out)."""
        members = {j: now() for j in job_ids}
        if members:
            self.r.zadd(self._k.queued, members, xx=True)

    def ended_before(self, before: float, limit: int = 200) -> list[str]:
        return [s_(m) for m in self.r.zrangebyscore(self._k.ended, "-inf", before, start=0,
                                                    num=limit)]

    def leave_ended(self, job_id: str) -> None:
        """Out of the retention index (gone already, or removed with its series)."""
        self.r.zrem(self._k.ended, job_id)

    def files_in_use(self) -> set[str]:
        """The upload digests that queued or running jobs use (those waiting in their owners'
        lines too: every owner's unfinished jobs, a series' children reading its parent's)."""
        ids = [s_(m) for m in self.r.zrange(self._k.queued, 0, -1)] + self.running_ids()
        for owner in (s_(m) for m in self.r.smembers(self._k.owners)):
            ids += [s_(m) for m in self.r.smembers(self._k.owner_active(owner))]
        return {ref.removeprefix("sha256:") for job in self._jobs(ids) if job is not None
                for ref in job.file_names}

    def reconcile_quota(self) -> int:
        """An owner's unfinished-job count holds only queued and running jobs; returns how many
        entries were dropped."""
        dropped = 0
        for owner in (s_(m) for m in self.r.smembers(self._k.owners)):
            key = self._k.owner_active(owner)
            ids = [s_(m) for m in self.r.smembers(key)]
            if not ids:
                continue
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(self._k.job(job_id), "status")
            dead = [j for j, st in zip(ids, pipe.execute()) if st not in (b"queued", b"running")]
            if dead:
                self.r.srem(key, *dead)
                dropped += len(dead)
        return dropped


@dataclass(frozen=True)
class OverLimit:
    """A refused submission: the limit exceeded (``jobs``, ``images`` or ``evaluations``) and the
    owner's unfinished work counting the refused job."""

    limit: str
    jobs: int
    images: int
    evaluations: int

    def value(self) -> int:
        return getattr(self, self.limit)


def created(code, val) -> tuple[int, object]:
    """A creating script's answer -> (code, seq | OverLimit | "<job id> <body hash>")."""
    code = int(code)
    if code == 0:
        limit, jobs, images, evaluations = s_(val).split()
        return 0, OverLimit(limit, int(jobs), int(images), int(evaluations))
    return code, (s_(val) if code == 2 else int(val))


def _new_fields(job: Job) -> dict:
    """A new record's fields (the script numbers it: ``seq`` and ``version``)."""
    fields = job.to_hash()
    del fields["seq"], fields["version"]
    return fields


__all__ = ["JobRecords", "STATUSES", "OwnerLimits", "OverLimit", "created"]
