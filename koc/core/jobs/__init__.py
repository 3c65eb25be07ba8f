"""Background jobs that a caller can follow: a row per job, updated by the task that runs it.

`GET /api/v1/jobs/{id}` reads this table; Celery keeps no results. Tasks are enqueued only after
the transaction that created their job row commits, so a worker never looks for a row that is not
there yet, and a rolled-back request enqueues nothing.

The package: `models` (the jobs table), `dispatch` (tasks sent after commit, by name), `runner`
(starting and running a job, and the sweep that re-sends lost ones); `api` is `/api/v1/jobs`.
"""

from koc.core.jobs.dispatch import enqueue_after_commit
from koc.core.jobs.models import Job, JobStatus
from koc.core.jobs.runner import requeue_stale_jobs, run_job, start_job

__all__ = ["Job", "JobStatus", "enqueue_after_commit", "requeue_stale_jobs", "run_job",
           "start_job"]
