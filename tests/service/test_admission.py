"""Fair share and series at scale, against the real Redis of the session (a namespace of their
own that no worker serves): owners take turns onto a queue of a bounded window, a series makes
its children as its turns come, a cancel marks the parent, limits count images and evaluations.
The queue's consumer is played here by popping RQ's list, as a worker's BLPOP does."""

from __future__ import annotations

import time

import pytest
from rq import Queue

from app.errors import ApiError
from app.submit import PreparedJob, create_job, create_series
from jobs import queue as rq_queue
from jobs import sweeper
from jobs.admission import admit
from jobs.settings import Settings
from sim_core.config import load_config
from tests.service.helpers import SMALL_CONFIG
from worker import context


@pytest.fixture()
def actx(redis_url, tmp_path):
    settings = Settings(redis_url=redis_url, namespace=f"adm{time.monotonic_ns()}",
                        data_dir=tmp_path / "data", lease_ttl_s=2, reaper_interval_s=0.1,
                        queue_window=2, series_child_evaluations=1)
    ctx = context.build("cpu", name="in-process", settings=settings)
    context.install(ctx)
    yield ctx
    context.install(None)


def _config(images: int = 1):
    cfg = load_config(dict(SMALL_CONFIG, detector={"distance_mm": 100, "fast_pixels": 8,
                                                   "slow_pixels": 8},
                           scan={"osc_range_deg": 0.5, "images": images}))
    cfg.noise.seed = 5
    return cfg


def _single(ctx, owner: str, evaluations: int = 64) -> str:
    return create_job(ctx, owner, kind="render", config=_config(), file_names={},
                      outputs=["float"], shape=(8, 8), evaluations=evaluations, warnings=[])


def _series(ctx, owner: str, images: int) -> str:
    prepared = PreparedJob(config=_config(images), file_names={}, outputs=["float"], shape=(8, 8),
                           evaluations=64, images=images)
    return create_series(ctx, owner, prepared)


def _queue(ctx) -> str:
    return rq_queue.queue_name(ctx.settings.namespace, "auto")


def _take(ctx) -> str:
    """What a worker does: take the next entry off the queue, then let the next turn on."""
    queue = _queue(ctx)
    raw = ctx.redis.lpop(Queue(queue, connection=ctx.redis).key)
    assert raw is not None, "the queue is empty"
    admit(ctx, [queue])
    return rq_queue.job_id_of(raw.decode())


def _on_queue(ctx) -> list[str]:
    key = Queue(_queue(ctx), connection=ctx.redis).key
    return [rq_queue.job_id_of(m.decode()) for m in ctx.redis.lrange(key, 0, -1)]


def test_another_owners_first_job_gets_on_within_one_turn(actx):
    r = actx.records
    big = _series(actx, "alice", images=500)
    singles = [_single(actx, "alice") for _ in range(5)]
    # the window holds two of alice's children; the rest of her work waits in her line
    assert len(_on_queue(actx)) == 2
    assert r.get(big).children_made == 2 and r.waiting_in_line(_queue(actx), "alice") == 6
    bob = _single(actx, "bob")
    assert bob not in _on_queue(actx)
    taken = [_take(actx) for _ in range(4)]
    # bob's job is let on after one turn of alice's (she was in line first), behind the window's
    # two: the fourth entry taken
    assert taken.index(bob) == 3, taken
    # alice's work goes on in her order: her series' children first
    assert all(t.startswith(big) for t in taken if t != bob)
    assert set(singles).isdisjoint(taken)


def test_owners_take_turns_one_job_each(actx):
    for owner in ("a", "b", "c"):
        for _ in range(4):
            _single(actx, owner)
    owners = {j.id: j.owner for j in actx.records.get_many(_on_queue(actx))}
    order = []
    while _on_queue(actx):
        job_id = _take(actx)
        order.append(owners.get(job_id) or actx.records.get(job_id).owner)
    # a's first two filled the window at once; then one job per owner per turn, a (whose
    # turn came first), b, c, until a's line is empty
    assert "".join(order) == "aa" + "abc" + "abc" + "bc" + "bc", order


def test_a_big_series_costs_one_record_and_makes_children_as_it_goes(actx):
    r = actx.records
    ns = actx.settings.namespace
    t0 = time.perf_counter()
    parent = _series(actx, "alice", images=3600)
    elapsed = time.perf_counter() - t0
    rec = r.get(parent)
    assert rec.children == 3600 and rec.children_made == 2 and rec.images == 3600
    job_keys = [k for k in actx.redis.scan_iter(f"{ns}:job:*", count=1000)
                if k.count(b":") == 2]
    assert len(job_keys) == 3  # the parent and the two children on the queue
    children = [j for j in r.children(parent)]
    assert [c.image_numbers for c in children] == [[1], [2]]
    assert [c.label for c in children] == ["image 1", "image 2"]
    assert all(c.evaluations == 64 and c.parent == parent and c.status == "queued"
               for c in children)
    first = _take(actx)
    assert first == children[0].id
    third = r.get(f"{parent}-00002")
    assert third is not None and third.image_numbers == [3] and third.rq_id
    assert third.queue == children[0].queue and third.timeout_s == children[0].timeout_s
    print(f"series of 3600 images written in {elapsed * 1000:.1f} ms")


def test_groups_of_several_images_follow_the_plan(actx):
    from sim_core.series import plan_children
    actx.settings.series_child_evaluations = 64 * 3  # three images a child
    actx.settings.queue_window = 100
    parent = _series(actx, "alice", images=10)
    rec = actx.records.get(parent)
    made = [c.image_numbers for c in actx.records.children(parent)]
    assert made == plan_children(range(1, 11), 64, 64 * 3)
    assert rec.children == len(made) == rec.children_made


def test_cancel_of_a_big_series_marks_the_parent_and_leaves_nothing_queued(actx):
    from app.routes.jobs import cancel_children
    r = actx.records
    parent = _series(actx, "alice", images=3600)
    _take(actx)  # one child taken by a "worker" (it stays queued: nobody runs it)
    t0 = time.perf_counter()
    assert r.mark_cancel(parent, "alice") == "cancel-requested"
    cancel_children(actx, parent, "alice")
    elapsed = time.perf_counter() - t0
    rec = r.get(parent)
    assert rec.status == "canceled" and rec.children == 3 and rec.images_canceled == 3600
    assert _on_queue(actx) == []
    admit(actx)
    assert _on_queue(actx) == [] and r.waiting_in_line(_queue(actx), "alice") == 0
    assert r.status_counts()["queued"] == 0 and r.status_counts()["canceled"] == 4
    assert not r.r.sismember(r._k.owner_active("alice"), parent)
    print(f"cancel of a 3600-image series in {elapsed * 1000:.1f} ms")


def test_a_series_canceled_before_any_child_ends_at_once(actx):
    r = actx.records
    actx.settings.queue_window = 1
    _single(actx, "bob")  # takes the window
    parent = _series(actx, "alice", images=100)
    assert r.get(parent).children_made == 0
    assert r.mark_cancel(parent, "alice") == "canceled"
    rec = r.get(parent)
    assert rec.status == "canceled" and rec.children == 0 and rec.images_canceled == 100
    _take(actx)
    assert _on_queue(actx) == [] and r.waiting_in_line(_queue(actx), "alice") == 0


def test_limits_count_images_and_evaluations_and_answer_429(actx):
    s = actx.settings
    s.max_queued_images_per_owner = 100
    _series(actx, "alice", images=60)
    with pytest.raises(ApiError) as err:
        _series(actx, "alice", images=50)
    e = err.value
    assert e.status_code == 429 and int(e.headers["Retry-After"]) >= 1
    assert e.errors[0]["limit"] == "max_queued_images_per_owner"
    assert e.errors[0]["value"] == 110 and e.errors[0]["allowed"] == 100
    assert e.errors[0]["unfinished"] == {"jobs": 2, "images": 110, "evaluations": 110 * 64}
    _series(actx, "alice", images=40)  # fits exactly
    _single(actx, "bob")  # another owner's work is not counted against her
    s.max_queued_images_per_owner = 10_000
    s.max_queued_evaluations_per_owner = 64 * 100 + 1000
    with pytest.raises(ApiError) as err:
        _single(actx, "alice", evaluations=1001)
    assert err.value.errors[0]["limit"] == "max_queued_evaluations_per_owner"
    _single(actx, "alice", evaluations=1000)


def test_the_sweeper_lets_on_a_job_whose_api_died_after_the_record(actx):
    r = actx.records
    job = _single(actx, "alice")
    # a second record written by an API that died before its ADMIT
    from app.submit import queued_job
    lost = queued_job(actx.settings, "f" * 32, "alice", kind="render", config=_config(),
                      file_names={}, outputs=["float"], shape=(8, 8), evaluations=64,
                      warnings=[], label=None, parent=None, trace_pixels=[])
    assert r.create(lost, actx.settings.owner_limits())[0] == 1
    assert _on_queue(actx) == [job]
    assert sweeper.sweep(actx, "test").admitted == 1
    assert _on_queue(actx) == [job, lost.id]
