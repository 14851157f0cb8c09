"""`POST /api/students/generate/`: throttled per user (STUDENT_GENERATE_RATE) and capped per owner
(STUDENTS_MAX), with a 409 that says how many more fit."""
import pytest
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from basic.models import Student

pytestmark = pytest.mark.django_db


@pytest.fixture
def generate_rate(settings, monkeypatch):
    def set_rate(rate: str) -> None:
        rates = {**api_settings.DEFAULT_THROTTLE_RATES, "student_generate": rate}
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
        monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", rates)
    return set_rate


def test_generate_is_throttled_per_user(client_for, alice, bob, generate_rate):
    generate_rate("3/min")
    alices = client_for(alice)
    codes = [alices.post("/api/students/generate/", {"count": 1}, format="json").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    refused = alices.post("/api/students/generate/", {"count": 1}, format="json")
    assert "detail" in refused.json() and int(refused["Retry-After"]) > 0
    assert client_for(bob).post("/api/students/generate/", {"count": 1}, format="json").status_code == 201
    assert alices.post("/api/students/", {"name": "Ada", "age": 3}, format="json").status_code == 201


def test_the_default_rate_is_ten_a_minute(api):
    codes = [api.post("/api/students/generate/", {"count": 1}, format="json").status_code for _ in range(11)]
    assert codes == [201] * 10 + [429]


def test_generate_stops_at_the_cap_with_409_saying_how_many_fit(api, settings, alice, bob, client_for):
    settings.STUDENTS_MAX = 100
    assert api.post("/api/students/generate/", {"count": 60}, format="json").status_code == 201
    refused = api.post("/api/students/generate/", {"count": 41}, format="json")
    assert refused.status_code == 409
    assert refused.json() == {"detail": "You may have 100 students; 40 more can be added."}
    assert Student.objects.count() == 60
    assert api.post("/api/students/generate/", {"count": 40}, format="json").json() == {"created": 40, "total": 100}
    full = api.post("/api/students/generate/", {"count": 1}, format="json")
    assert full.status_code == 409 and "0 more" in full.json()["detail"]
    one = api.post("/api/students/", {"name": "Ada", "age": 3}, format="json")  # one at a time too
    assert one.status_code == 409 and "0 more" in one.json()["detail"]
    assert Student.objects.filter(owner=alice).count() == 100
    # The cap is each owner's: alice's full table takes nothing from bob.
    assert client_for(bob).post("/api/students/generate/", {"count": 100}, format="json").json() == {
        "created": 100, "total": 100}
    assert Student.objects.count() == 200
