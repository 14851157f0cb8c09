"""HTTP routes: the REST API, its schema and docs, and the pages."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from basic.accounts.login_throttle import ThrottledLoginView, ThrottledObtainAuthToken, throttled_sign_in
from basic.api.batches import BatchViewSet
from basic.api.console import console
from basic.api.kinds import KindListView
from basic.api.schedules import ScheduleViewSet
from basic.api.tokens import ApiTokenListView, ApiTokenRevokeView
from basic.api.views import JobViewSet, StudentViewSet, kind_start_view
from basic.jobs.registry import kinds
from basic.ops import views as ops_views

router = DefaultRouter()
router.register("students", StudentViewSet, basename="student")
router.register("jobs", JobViewSet, basename="job")
router.register("batches", BatchViewSet, basename="batch")  # basic/jobs/batches.py
router.register("schedules", ScheduleViewSet, basename="schedule")  # basic/jobs/schedules.py

# A URL under /api/ that matches no route is a JSON 404 like any other (basic/api/errors.py).
handler404 = "basic.api.errors.not_found"

urlpatterns = [
    # Sign-in is throttled per client address and per username (basic/accounts/login_throttle.py).
    path("api/auth/token/", ThrottledObtainAuthToken.as_view(), name="api-token"),
    # Your API tokens, hashed at rest: list and revoke (basic/api/tokens.py).
    path("api/auth/tokens/", ApiTokenListView.as_view(), name="api-token-list"),
    path("api/auth/tokens/<int:pk>/", ApiTokenRevokeView.as_view(), name="api-token-detail"),
    # A kind with a `route` gets its own trigger, e.g. POST /api/thumbnails/ (basic/kinds/).
    *(path(f"api/{kind.route}/", kind_start_view(kind).as_view(), name=f"{kind.name}-start")
      for kind in kinds() if kind.route),
    path("api/kinds/", KindListView.as_view(), name="kind-list"),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Every form that checks a password shares that budget; these paths come before the includes
    # that also define them, so the throttled views answer and `reverse()` names stay the same.
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    # (Password changes check the old password: throttled after the sign-in check, by user name.)
    path("accounts/password_change/", login_required(throttled_sign_in(auth_views.PasswordChangeView.as_view())),
         name="password_change"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/login/", throttled_sign_in(admin.site.login)),
    path("admin/password_change/",
         admin.site.admin_view(throttled_sign_in(admin.site.password_change), cacheable=True)),
    path("admin/", admin.site.urls),
    # Operations (basic/ops/views.py; OpsEndpointsMiddleware answers these paths first).
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics_view, name="metrics"),
    path("", console, name="console"),
]
