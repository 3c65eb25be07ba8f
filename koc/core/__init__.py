"""Code every domain package uses: auth, storage, errors, pagination, jobs, the Celery app."""
