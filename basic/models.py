"""The index of the app's models (app label `basic`): each is defined in the package that owns it.

Code in `basic.jobs`, `basic.students` and `basic.accounts` imports its own `models` module;
everything above them (the API, sockets, operations, the admin) may import from here.
"""
from basic.accounts.models import ApiToken
from basic.jobs.models import Batch, IdempotencyKey, Job, Schedule, StoredOutput
from basic.students.models import Student

__all__ = ["ApiToken", "Batch", "IdempotencyKey", "Job", "Schedule", "StoredOutput", "Student"]
