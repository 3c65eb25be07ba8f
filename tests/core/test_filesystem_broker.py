"""The embedded broker survives processes that bind the same exchanges at the same moment.

`make demo` starts the web process, the worker and its beat scheduler together; each declares
Celery's queues, which writes the filesystem transport's exchange tables. With stock kombu a
process could read a table its neighbour had just created and not yet written, and die.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

from koc.core.celery import FILESYSTEM_TRANSPORT

PROCESSES = 6
EXCHANGES = 40


def _bind_all(folder: str, transport: str, start: multiprocessing.synchronize.Barrier,
              worker: int) -> None:
    options = {"data_folder_in": f"{folder}/queue", "data_folder_out": f"{folder}/queue",
               "control_folder": f"{folder}/control"}
    with Connection("filesystem://", transport=transport, transport_options=options) as conn:
        channel = conn.channel()
        start.wait()
        for number in range(EXCHANGES):
            exchange = Exchange(f"x{number}", type="direct")
            Queue(f"q{number}-{worker}", exchange, routing_key=f"k{worker}")(channel).declare()
            # A publisher reading the table while others bind to it.
            conn.Producer(channel).publish({"n": number}, exchange=exchange,
                                           routing_key=f"k{worker}", declare=[])


def _run_together(folder: Path, transport: str) -> list[int]:
    for name in ("queue", "control"):
        (folder / name).mkdir(parents=True)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    processes = [context.Process(target=_bind_all, args=(str(folder), transport, start, worker))
                 for worker in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    return [process.exitcode for process in processes]


@pytest.mark.timeout(120)
def test_processes_binding_at_once_all_succeed_and_every_binding_is_kept(tmp_path: Path) -> None:
    assert _run_together(tmp_path, FILESYSTEM_TRANSPORT) == [0] * PROCESSES

    with Connection("filesystem://", transport=FILESYSTEM_TRANSPORT, transport_options={
            "control_folder": str(tmp_path / "control")}) as conn:
        channel = conn.channel()
        for number in range(EXCHANGES):
            queues = {binding.queue for binding in channel.get_table(f"x{number}")}
            assert queues == {f"q{number}-{worker}" for worker in range(PROCESSES)}
    # Each process published one message per exchange to its own queue: none was lost.
    assert len(list((tmp_path / "queue").iterdir())) == PROCESSES * EXCHANGES
