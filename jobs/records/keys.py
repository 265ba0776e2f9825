"""The Redis keys of the records (``ns`` is ``BRAGG_NAMESPACE``); only ``jobs.records`` uses them::

    ns:job:<id>              hash: the job record (status, progress, config, artifacts list, ...)
    ns:job:<id>:traces       hash: "slow,fast" -> id of the trace job that traces that pixel
                             (of a series: "n:slow,fast", n the image)
    ns:job:<id>:children     sorted set: a series' child jobs by the number of their first image
    ns:job:<id>:settled      hash: child id -> the status it ended in, once ROLLUP counted it
    ns:job:<id>:partial      hash: running child id -> the images it has rendered so far (progress)
    ns:job:<id>:live         set: a series' children made and not counted as ended yet
    ns:job:<id>:template     hash: the fields every child of a series shares (ADMIT makes each
                             child from it when the series' turn comes)
    ns:line:<queue>:<owner>  list: the owner's jobs waiting to be let onto an RQ queue (a series
                             stays at the head until its last child is made)
    ns:turns:<queue>         list: owners with a job waiting in line for that queue, in turn
    ns:series                set: series (parents) not ended yet (the sweeper settles their children)
    ns:owner:<owner>:jobs    sorted set: the owner's jobs by submission sequence (newest = highest)
    ns:owner:<owner>:active  set: the owner's queued and running jobs (the queued-jobs limit)
    ns:file:<owner>:<hex>    hash: an uploaded file the owner may use (name, size, kind, summary)
    ns:running               set: running jobs (the sweeper looks for lost leases among them)
    ns:queued                sorted set: queued jobs by the time they were let onto a queue; the
                             outbox of the queue (the sweeper enqueues one found on no queue again)
    ns:ended                 sorted set: finished, failed and canceled jobs by end time (retention)
    ns:owners                set: owners that ever submitted (quota reconciliation)
    ns:idem:<owner>:<hash>   string with a 24 h TTL: "<job id> <body sha256>" of an Idempotency-Key
    ns:uploads               sorted set: "<owner>:<hex>" uploads by their last use (retention)
    ns:lease:<id>            string with a TTL: "worker|attempt" while a live worker runs the job
    ns:worker:<name>         hash with a TTL: a live worker (device, queues, state, current job)
    ns:workers               set: names of workers that registered (dead ones are dropped on read)
    ns:stats:status          hash: number of jobs in each status
    ns:metrics               hash: duration histogram and evaluation counters (for /metrics)
    ns:lock:sweeper          string with a TTL: the process sweeping now
    ns:retention             string with a TTL: retention ran less than its interval ago
"""

from __future__ import annotations


class Keys:
    def __init__(self, ns: str):
        self.ns = ns
        self.seq = f"{ns}:seq"
        self.running = f"{ns}:running"
        self.stats = f"{ns}:stats:status"
        self.metrics = f"{ns}:metrics"
        self.workers = f"{ns}:workers"
        self.sweeper_lock = f"{ns}:lock:sweeper"
        self.queued = f"{ns}:queued"
        self.ended = f"{ns}:ended"
        self.owners = f"{ns}:owners"
        self.uploads = f"{ns}:uploads"
        self.retention = f"{ns}:retention"
        self.series = f"{ns}:series"

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    def traces(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:traces"

    def children(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:children"

    def settled(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:settled"

    def partial(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:partial"

    def live(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:live"

    def template(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:template"

    def line_prefix(self, queue: str) -> str:
        return f"{self.ns}:line:{queue}:"

    def line(self, queue: str, owner: str) -> str:
        return self.line_prefix(queue) + owner

    def turns(self, queue: str) -> str:
        return f"{self.ns}:turns:{queue}"

    def owner_jobs(self, owner: str) -> str:
        return f"{self.ns}:owner:{owner}:jobs"

    def owner_active(self, owner: str) -> str:
        return f"{self.ns}:owner:{owner}:active"

    def file(self, owner: str, digest: str) -> str:
        return f"{self.ns}:file:{owner}:{digest}"

    def lease(self, job_id: str) -> str:
        return f"{self.ns}:lease:{job_id}"

    def worker(self, name: str) -> str:
        return f"{self.ns}:worker:{name}"

    def idempotency(self, owner: str, key_hash: str) -> str:
        return f"{self.ns}:idem:{owner}:{key_hash}"


__all__ = ["Keys"]
