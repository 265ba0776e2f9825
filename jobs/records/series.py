"""Series records: a parent with its children, written together, rolled up as children move."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterator, Optional

from jobs.job import Job

from .base import RecordsBase, encode, now, s_
from .jobs import OwnerLimits, _new_fields, created

#: fields ADMIT writes for each child of a series (the others are the shared fields)
_PER_CHILD = {"id", "status", "image_numbers", "label", "evaluations", "rq_id", "created_at"}


@dataclass(frozen=True)
class QueueEntry:
    """A child canceled while queued: its entry on ``queue`` is to be discarded."""

    id: str
    rq_id: str
    queue: str


class SeriesRecords(RecordsBase):
    def create_series(self, parent: Job, children: list[Job], limits: OwnerLimits,
                      idempotency: tuple[str, str] | None = None,
                      idempotency_ttl: int = 86400) -> tuple[int, object]:
        """Write a parent (a verification) and every child record, each child in the owner's
        line of its queue. Returns as :meth:`JobRecords.create`."""
        key_hash, body_hash = idempotency or ("", "")
        owner = parent.owner
        keys = self._create_keys(parent, key_hash) + [
            self._k.children(parent.id), self._k.series, self._k.live(parent.id)]
        words = encode(_new_fields(parent))
        args = [limits.words(len(children), parent.evaluations), parent.id, body_hash,
                idempotency_ttl, now(), owner, self._k.job(""), len(words)] + words
        for child in children:
            cw = encode(_new_fields(child))
            args += [child.id, child.image_numbers[0], self._k.line(child.queue, owner),
                     self._k.turns(child.queue), len(cw)] + cw
        code, val = self._create_series(keys=keys, args=args)
        return created(code, val)

    def create_lazy_series(self, parent: Job, child: Job, limits: OwnerLimits,
                           idempotency: tuple[str, str] | None = None,
                           idempotency_ttl: int = 86400) -> tuple[int, object]:
        """Write a series' parent (``children`` planned, none made) and the fields its children
        share (``child``: one of them; its id, images, label and evaluations are made per child
        by ADMIT). Returns as :meth:`JobRecords.create`."""
        key_hash, body_hash = idempotency or ("", "")
        keys = self._create_keys(parent, key_hash) + [
            self._k.line(child.queue, parent.owner), self._k.turns(child.queue),
            self._k.series, self._k.template(parent.id)]
        words = encode(_new_fields(parent))
        shared = {k: v for k, v in _new_fields(child).items()
                  if k not in _PER_CHILD and v not in ("", None, [], {})}
        args = [limits.words(parent.images, parent.evaluations), parent.id, body_hash,
                idempotency_ttl, now(), parent.owner, len(words)] + words + encode(shared)
        code, val = self._create_lazy_series(keys=keys, args=args)
        return created(code, val)

    def rollup(self, parent: str, child: str, owner: str, client=None) -> str:
        """Count a child's move into its series (idempotent); returns the parent's status
        (``client``: a pipeline, whose execute() then gives it)."""
        keys = [self._k.job(parent), self._k.job(child), self._k.settled(parent),
                self._k.owner_active(owner), self._k.stats, self._k.ended, self._k.series,
                self._k.partial(parent), self._k.queued, self._k.live(parent)]
        # a verification's report step gets a queue entry id as RQ's are made (jobs.queue)
        report_rq_id = f"{parent}_{uuid.uuid4().hex[:8]}"
        out = self._rollup(keys=keys, args=[child, now(), parent, report_rq_id], client=client)
        return out if client is not None else s_(out)

    def settle(self, job: Job) -> Optional[str]:
        """ROLLUP of a series child (or a verification's side); None for any other job.
        'report': the verification's report step is queued now."""
        if job.is_series_child:
            return self.rollup(job.parent, job.id, job.owner)
        return None

    def series_progress(self, parent: str, child: str, images: float) -> None:
        """A running child has rendered ``images`` of its images (a fraction of them) so far."""
        self._series_progress(keys=[self._k.job(parent), self._k.partial(parent),
                                    self._k.settled(parent)], args=[child, f"{images:.4f}"])

    def mark_cancel(self, parent: str, owner: str, *, stop_only: bool = False) -> str:
        """MARK_CANCEL: a series makes no more children and, unless ``stop_only``, is flagged for
        cancel. Returns 'cancel-requested', the status it ended in here, or the status it had."""
        keys = [self._k.job(parent), self._k.owner_active(owner), self._k.stats, self._k.ended,
                self._k.series]
        return s_(self._mark_cancel(keys=keys, args=[now(), parent,
                                                     "stop" if stop_only else "cancel"]))

    def live_children(self, parent: str) -> list[str]:
        """Children made and not counted as ended yet (a few: a series makes them as they are
        let onto a queue)."""
        return sorted(s_(m) for m in self.r.smembers(self._k.live(parent)))

    def cancel_children(self, parent: str, owner: str) -> list[QueueEntry]:
        """CANCEL every live child of a series, then ROLLUP each, in two pipelines. Returns the
        queue entries of the children canceled here while queued (to be discarded)."""
        children = self.live_children(parent)
        pipe = self.r.pipeline(transaction=False)
        for child in children:
            self.cancel(child, owner, client=pipe)
            pipe.hmget(self._k.job(child), "rq_id", "queue")
        out = pipe.execute()
        canceled = [QueueEntry(child, s_(rq_id or b""), s_(queue or b""))
                    for child, outcome, (rq_id, queue) in zip(children, out[::2], out[1::2])
                    if s_(outcome) == "canceled"]
        pipe = self.r.pipeline(transaction=False)
        for child in children:
            self.rollup(parent, child, owner, client=pipe)
        pipe.execute()
        return canceled

    # -- reads ----------------------------------------------------------------------------------------
    def child_ids(self, parent: str) -> list[str]:
        """A series' children in image order."""
        return [s_(m) for m in self.r.zrange(self._k.children(parent), 0, -1)]

    def children(self, parent: str, batch: int = 200) -> Iterator[Job]:
        """Every child record of a series, in image order, read ``batch`` at a time."""
        ids = self.child_ids(parent)
        for start in range(0, len(ids), batch):
            for job in self._jobs(ids[start:start + batch]):
                if job is not None:
                    yield job

    def children_of(self, parent: str, *, limit: int = 20, cursor: Optional[int] = None
                    ) -> tuple[list[Job], Optional[int]]:
        """A page of a series' children in image order; the cursor is the first image of the
        next page."""
        ids_scores = self.r.zrangebyscore(self._k.children(parent),
                                          cursor if cursor is not None else "-inf", "+inf",
                                          start=0, num=limit + 1, withscores=True)
        jobs = [j for j in self._jobs([s_(m) for m, _ in ids_scores[:limit]]) if j is not None]
        nxt = int(ids_scores[limit][1]) if len(ids_scores) > limit else None
        return jobs, nxt

    def child_for_image(self, parent: str, n: int) -> Optional[Job]:
        """The child that renders image ``n`` of a series (None if none does)."""
        found = self.r.zrevrangebyscore(self._k.children(parent), n, "-inf", start=0, num=1)
        if not found:
            return None
        job = self.get(s_(found[0]))
        return job if job is not None and n in job.image_numbers else None

    def live_series(self) -> list[str]:
        return sorted(s_(m) for m in self.r.smembers(self._k.series))

    def drop_live_series(self, parent: str) -> None:
        self.r.srem(self._k.series, parent)

    def unsettled_moved_children(self, parent: str) -> list[str]:
        """Children of a series that have left 'queued' but that ROLLUP has not counted as
        ended yet (a process died between a child's move and its rollup)."""
        todo = self.live_children(parent)
        pipe = self.r.pipeline(transaction=False)
        for child in todo:
            pipe.hget(self._k.job(child), "status")
        return [c for c, st in zip(todo, pipe.execute()) if st is not None and st != b"queued"]


__all__ = ["SeriesRecords", "QueueEntry"]
