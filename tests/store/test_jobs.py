"""Jobs: one job per request, a child and a result per device, progress and cancellation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from netfleet.domain.errors import Conflict, InvalidInput, NotFound
from netfleet.domain.selectors import Selector
from netfleet.store import Store
from netfleet.store.records import DeviceSpec, JobDetail, ResultUpdate

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def fleet(store: Store, count: int = 4) -> None:
    async with store.transaction() as tx:
        await tx.devices.upsert_many([
            DeviceSpec(f"ios-{i:05d}", f"192.0.2.{i}", "cisco_ios",
                       tags=["core"] if i % 2 else ["edge"]) for i in range(1, count + 1)])


async def submit(store: Store, *clauses: str, kind: str = "command") -> JobDetail:
    async with store.transaction() as tx:
        return await tx.jobs.create(kind, {"commands": ["show version"]},
                                    Selector.parse(clauses), requested_by="ci")


def child(detail: JobDetail, device: str) -> str:
    return next(r.job_id for r in detail.results if r.device == device)


async def test_a_bulk_job_has_one_id_and_a_queued_result_per_device(store: Store) -> None:
    await fleet(store)
    created = await submit(store, "tag=core")
    async with store.transaction(readonly=True) as tx:
        detail = await tx.jobs.get(created.job.id)
    job = detail.job
    assert (job.kind, job.status, job.total, job.done, job.requested_by) == (
        "command", "queued", 2, 0, "ci")
    assert job.spec == {"commands": ["show version"]}
    assert job.selector == Selector(tags=["core"])
    assert [(r.device, r.status, r.attempt) for r in detail.results] == [
        ("ios-00001", "queued", 0), ("ios-00003", "queued", 0)]
    assert all(r.parent_id == job.id for r in detail.results)
    assert detail.results == created.results


async def test_a_job_names_the_devices_it_could_not_find(store: Store) -> None:
    await fleet(store)
    with pytest.raises(NotFound, match="ios-99999"):
        await submit(store, "name=ios-00001", "name=ios-99999")
    with pytest.raises(InvalidInput, match="matches no device") as caught:
        await submit(store, "tag=nothing")
    assert caught.value.field == "selector"
    with pytest.raises(InvalidInput) as bad_kind:
        await submit(store, "tag=core", kind="reboot")
    assert bad_kind.value.field == "kind"
    async with store.transaction(readonly=True) as tx:
        assert (await tx.jobs.find()).items == []


async def test_results_move_the_job_from_queued_to_running_to_succeeded(store: Store) -> None:
    await fleet(store, 2)
    job = await submit(store, "name=ios-*")
    first, second = child(job, "ios-00001"), child(job, "ios-00002")
    async with store.transaction() as tx:
        assert await tx.jobs.update_result(ResultUpdate(first, "running", started_at=T0,
                                                        attempt=1, session_reused=True))
        running = (await tx.jobs.get(job.job.id)).job
    async with store.transaction() as tx:
        outputs = [{"command": "show version", "raw": "Cisco IOS XE", "parsed": [{"v": "17"}]}]
        await tx.jobs.record_results([
            ResultUpdate(first, "succeeded", outputs=outputs,
                         finished_at=T0 + timedelta(seconds=1)),
            ResultUpdate(second, "succeeded", started_at=T0,
                         finished_at=T0 + timedelta(seconds=2), attempt=1)])
        done = await tx.jobs.get(job.job.id)
    assert (running.status, running.started_at) == ("running", T0)
    assert (done.job.status, done.job.succeeded, done.job.done) == ("succeeded", 2, 2)
    assert done.job.finished_at is not None
    result = done.results[0]
    assert (result.status, result.outputs, result.session_reused, result.attempt) == (
        "succeeded", outputs, True, 1)
    assert (result.started_at, result.finished_at) == (T0, T0 + timedelta(seconds=1))


async def test_a_report_from_an_earlier_attempt_does_not_overwrite_a_later_one(
        store: Store) -> None:
    """In a cluster, a recorder that lost its partition may write an old run's report late,
    after the job was taken over and its next attempt recorded as running."""
    await fleet(store, 1)
    job = await submit(store)
    one = child(job, "ios-00001")
    async with store.transaction() as tx:
        await tx.jobs.record_results([
            ResultUpdate(one, "running", started_at=T0, attempt=1),
            ResultUpdate(one, "running", started_at=T0 + timedelta(seconds=5), attempt=2),
            ResultUpdate(one, "succeeded", finished_at=T0 + timedelta(seconds=1), attempt=1)])
        running = (await tx.jobs.get(job.job.id)).results[0]
        await tx.jobs.record_results([
            ResultUpdate(one, "succeeded", finished_at=T0 + timedelta(seconds=6), attempt=2)])
        done = (await tx.jobs.get(job.job.id)).results[0]
    assert (running.status, running.attempt) == ("running", 2)
    assert (done.status, done.attempt, done.started_at, done.finished_at) == (
        "succeeded", 2, T0 + timedelta(seconds=5), T0 + timedelta(seconds=6))


async def test_one_failed_device_fails_the_job_and_keeps_its_category(store: Store) -> None:
    await fleet(store, 3)
    job = await submit(store)
    async with store.transaction() as tx:
        await tx.jobs.record_results([
            ResultUpdate(child(job, "ios-00001"), "succeeded"),
            ResultUpdate(child(job, "ios-00002"), "failed", category="auth",
                         message="the device refused the credentials"),
            ResultUpdate(child(job, "ios-00003"), "timed_out", category="timeout")])
        detail = await tx.jobs.get(job.job.id)
    assert (detail.job.status, detail.job.succeeded, detail.job.failed) == ("failed", 1, 2)
    failed = detail.results[1]
    assert (failed.status, failed.category, failed.message) == (
        "failed", "auth", "the device refused the credentials")


async def test_work_left_unfinished_by_a_stop_is_failed_as_interrupted(store: Store) -> None:
    await fleet(store, 3)
    job = await submit(store)
    async with store.transaction() as tx:
        await tx.jobs.record_results([
            ResultUpdate(child(job, "ios-00001"), "succeeded"),
            ResultUpdate(child(job, "ios-00002"), "running", started_at=T0)])
    async with store.transaction() as tx:
        assert await tx.jobs.interrupt_unfinished() == 2
        assert await tx.jobs.interrupt_unfinished() == 0  # nothing twice
        detail = await tx.jobs.get(job.job.id)
    assert (detail.job.status, detail.job.succeeded, detail.job.failed, detail.job.done) == (
        "failed", 1, 2, 3)
    assert detail.job.finished_at is not None
    by_device = {r.device: r for r in detail.results}
    assert by_device["ios-00001"].status == "succeeded"
    ran, waited = by_device["ios-00002"], by_device["ios-00003"]
    assert (ran.status, ran.category, ran.started_at) == ("failed", "interrupted", T0)
    assert "while this ran" in (ran.message or "") and "check the device" in (ran.message or "")
    assert (waited.status, waited.category, waited.started_at) == ("failed", "interrupted", None)
    assert "before this device ran" in (waited.message or "")


async def test_a_dry_run_keeps_its_diff(store: Store) -> None:
    await fleet(store, 1)
    job = await submit(store, kind="config")
    diff = "+ interface Gi0/1\n+  description uplink"
    async with store.transaction() as tx:
        await tx.jobs.update_result(ResultUpdate(child(job, "ios-00001"), "succeeded",
                                                 diff=diff))
        result = (await tx.jobs.get(job.job.id)).results[0]
    assert result.diff == diff


async def test_a_final_result_is_never_overwritten(store: Store) -> None:
    await fleet(store, 1)
    job = await submit(store)
    only = child(job, "ios-00001")
    async with store.transaction() as tx:
        assert await tx.jobs.update_result(ResultUpdate(only, "failed", category="connect"))
        assert not await tx.jobs.update_result(ResultUpdate(only, "succeeded"))
        detail = await tx.jobs.get(job.job.id)
    assert (detail.job.status, detail.job.failed, detail.job.succeeded) == ("failed", 1, 0)
    assert detail.results[0].category == "connect"


async def test_cancel_stops_queued_devices_and_leaves_running_ones(store: Store) -> None:
    await fleet(store, 3)
    job = await submit(store)
    running = child(job, "ios-00001")
    async with store.transaction() as tx:
        await tx.jobs.update_result(ResultUpdate(running, "running"))
        cancelled = await tx.jobs.cancel(job.job.id)
    statuses = {r.device: r.status for r in cancelled.results}
    assert statuses == {"ios-00001": "running", "ios-00002": "cancelled",
                        "ios-00003": "cancelled"}
    assert (cancelled.job.status, cancelled.job.cancelled) == ("running", 2)
    async with store.transaction() as tx:
        # The engine's next report for a cancelled device is refused: it must not run it.
        assert not await tx.jobs.update_result(ResultUpdate(child(job, "ios-00002"),
                                                            "running"))
        await tx.jobs.update_result(ResultUpdate(running, "succeeded"))
        final = (await tx.jobs.get(job.job.id)).job
    assert (final.status, final.succeeded, final.cancelled) == ("cancelled", 1, 2)
    with pytest.raises(Conflict, match="already cancelled"):
        async with store.transaction() as tx:
            await tx.jobs.cancel(job.job.id)


async def test_cancelling_one_device_of_a_bulk_job(store: Store) -> None:
    await fleet(store, 2)
    job = await submit(store)
    async with store.transaction() as tx:
        mine = await tx.jobs.cancel(child(job, "ios-00002"))
        parent = (await tx.jobs.get(job.job.id)).job
    assert [(r.device, r.status) for r in mine.results] == [("ios-00002", "cancelled")]
    assert mine.job.parent_id == job.job.id
    assert (parent.status, parent.cancelled, parent.done) == ("running", 1, 1)


async def test_concurrent_reports_finish_the_job_exactly_once(store: Store) -> None:
    await fleet(store, 12)
    job = await submit(store)

    async def report(child_id: str) -> None:
        async with store.transaction() as tx:
            await tx.jobs.update_result(ResultUpdate(child_id, "succeeded"))

    await asyncio.gather(*(report(r.job_id) for r in job.results))
    async with store.transaction(readonly=True) as tx:
        detail = await tx.jobs.get(job.job.id)
    assert (detail.job.status, detail.job.succeeded, detail.job.done) == ("succeeded", 12, 12)
    assert {r.status for r in detail.results} == {"succeeded"}


async def test_listing_filters_and_pages_newest_first(store: Store) -> None:
    await fleet(store, 3)
    ids = []
    for clauses, kind in [(("name=ios-00001",), "command"), (("name=ios-00002",), "config"),
                          (("tag=core",), "command"), (("name=ios-00002",), "facts")]:
        ids.append((await submit(store, *clauses, kind=kind)).job.id)
    async with store.transaction() as tx:
        await tx.jobs.cancel(ids[1])
        everything = await tx.jobs.find()
        commands = await tx.jobs.find(kind="command")
        on_ios1 = await tx.jobs.find(device="ios-00001")
        cancelled = await tx.jobs.find(status="cancelled")
        pages: list[str] = []
        cursor: str | None = None
        while True:
            page = await tx.jobs.find(limit=3, after=cursor)
            pages += [j.id for j in page.items]
            if (cursor := page.next_cursor) is None:
                break
    newest_first = ids[::-1]
    assert [j.id for j in everything.items] == newest_first  # no children in the listing
    assert [j.id for j in commands.items] == [ids[2], ids[0]]
    assert [j.id for j in on_ios1.items] == [ids[2], ids[0]]
    assert [j.id for j in cancelled.items] == [ids[1]]
    assert pages == newest_first


async def test_listing_rejects_bad_filters_and_cursors(store: Store) -> None:
    async with store.transaction(readonly=True) as tx:
        with pytest.raises(InvalidInput) as status:
            await tx.jobs.find(status="done")
        with pytest.raises(InvalidInput) as cursor:
            await tx.jobs.find(after="not-a-cursor")
    assert status.value.field == "status"
    assert cursor.value.field == "after"


async def test_a_job_keeps_its_results_after_the_device_is_deleted(store: Store) -> None:
    await fleet(store, 1)
    job = await submit(store)
    async with store.transaction() as tx:
        await tx.devices.delete("ios-00001")
        detail = await tx.jobs.get(job.job.id)
        by_device = await tx.jobs.find(device="ios-00001")
    assert [r.device for r in detail.results] == ["ios-00001"]
    assert [j.id for j in by_device.items] == [job.job.id]


async def test_unknown_jobs_are_not_found(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(NotFound):
            await tx.jobs.get("00000000-0000-0000-0000-000000000000")
        with pytest.raises(NotFound):
            await tx.jobs.cancel("00000000-0000-0000-0000-000000000000")
