"""System checks for settings that are valid but almost certainly not what was meant."""
from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security)
def browser_sockets_allowed(app_configs, **kwargs):  # type: ignore[no-untyped-def]
    if settings.WS_ALLOWED_ORIGINS:
        return []
    return [checks.Warning(
        "WS_ALLOWED_ORIGINS is empty, so every browser WebSocket is refused (ALLOWED_HOSTS has no named "
        "host to derive it from, e.g. ALLOWED_HOSTS=*).",
        hint="Set WS_ALLOWED_ORIGINS to the origins your pages are served from, e.g. https://jobs.example.com.",
        id="basic.W001",
    )]
