"""Every answer under /api/ is JSON with DEBUG on as with it off (basic/api/errors.py,
JsonErrorsUnderApiMiddleware): Django's DEBUG pages (the technical 404 a URL matching no route gets,
the 500 of an error outside a view) never reach an API client. Outside /api/ its pages stay."""
import pytest
from django.core.exceptions import SuspiciousOperation
from django.http import HttpResponse

from basic.api import errors

pytestmark = pytest.mark.django_db

# URLs schemathesis (and people) sent that match no route: each was DEBUG's HTML 404.
NO_ROUTE = ["/api/jobs//", "/api/schedules/2.6e-195/", "/api/students/abc/", "/api/nothing-here",
            "/api/nothing-here/", "/api/jobs/%C2%84/", "/api/"]


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("path", NO_ROUTE)
def test_a_url_under_api_that_matches_no_route_is_a_json_404(api, settings, debug, path):
    settings.DEBUG = debug
    response = api.get(path)
    if path == "/api/":  # the router's root view answers it
        assert response.status_code == 200 and response["Content-Type"] == "application/json"
        return
    assert response.status_code == 404, path
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_outside_api_django_pages_stay(client, settings, debug):
    settings.DEBUG = debug
    response = client.get("/nothing-here/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_missing_slash_still_redirects(api, settings):
    settings.DEBUG = True
    response = api.get("/api/jobs")
    assert response.status_code == 301 and response["Location"] == "/api/jobs/"


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_an_error_outside_any_view_is_json_under_api(api, settings, monkeypatch, debug):
    """E.g. a middleware's SuspiciousOperation: DEBUG's answer is the technical 500 page with 400."""
    settings.DEBUG = debug

    def refuse(request, *args, **kwargs):
        raise SuspiciousOperation("refused")

    monkeypatch.setattr("basic.api.views.JobViewSet.initialize_request", refuse)
    response = api.get("/api/jobs/")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json() == {"detail": errors.UNREADABLE_REQUEST}


def test_json_error_keeps_what_a_client_needs(rf):
    page = HttpResponse("<h1>Method Not Allowed</h1>", status=405, content_type="text/html")
    page["Allow"] = "GET, POST"
    answer = errors.json_error(rf.put("/api/jobs/"), page)
    assert answer.status_code == 405 and answer["Allow"] == "GET, POST"
    assert answer["Content-Type"] == "application/json" and b"Method Not Allowed." in answer.content
    untouched = HttpResponse("<p>docs</p>", content_type="text/html")
    assert errors.json_error(rf.get("/api/docs/"), untouched) is untouched
