"""The REST side of the per-user start budget: DRF's ScopedRateThrottle, counting in
`basic.core.rate_limit.take` (the function the scheduler calls too), so REST starts and scheduled
runs of one user draw on one budget (`job_trigger`: JOB_TRIGGER_RATE)."""
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from basic.core import rate_limit


class SharedScopedRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle whose budget is `rate_limit.take(scope, user)`; anonymous callers (who
    can't start anything: every start needs sign-in) fall back to DRF's own counting."""

    decision: rate_limit.Decision | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope or not request.user or not request.user.is_authenticated:
            return super().allow_request(request, view)
        self.decision = rate_limit.take(self.scope, request.user.pk)
        return self.decision.allowed

    def wait(self) -> float | None:
        if self.decision is None:
            return super().wait()
        return self.decision.retry_after
