"""The training side: Celery tasks that claim, train and persist jobs. Imports torch lazily."""
