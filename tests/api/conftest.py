import pytest
from rest_framework.test import APIClient


@pytest.fixture
def anon():
    return APIClient()


@pytest.fixture
def api(alice):
    """A client signed in as alice."""
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def client_for():
    def make(user):
        client = APIClient()
        client.force_authenticate(user)
        return client
    return make
