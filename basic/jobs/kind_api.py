"""What `basic.jobs` offers a job kind (basic/kinds/, or a module named in JOB_KIND_MODULES): declare the
kind, read parameters, report progress, write outputs, fail with a message. Kinds import this module
and nothing else of `basic.jobs` (checked by import-linter), so the platform can change beneath them."""
from basic.jobs.context import JobCancelled, JobContext, JobFailed, JobRetryable
from basic.jobs.registry import CPU, IO, JobKind, KindContext, register

__all__ = ["CPU", "IO", "JobCancelled", "JobContext", "JobFailed", "JobKind", "JobRetryable", "KindContext",
           "register"]
