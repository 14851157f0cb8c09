import pytest

pytestmark = pytest.mark.django_db


def test_cors_allows_only_configured_origins(api, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://dashboard.example"]
    allowed = api.get("/api/jobs/", HTTP_ORIGIN="https://dashboard.example")
    assert allowed["Access-Control-Allow-Origin"] == "https://dashboard.example"
    refused = api.get("/api/jobs/", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in refused


def test_no_cross_origin_access_by_default(api):
    response = api.get("/api/jobs/", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response
