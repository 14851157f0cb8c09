"""Browser tests: Debian's Chromium, driven by Playwright, against the app started for real
(Daphne, a gevent Celery worker, Redis). One stack and one Chromium serve the whole browser
package, and both stop when it is done: Playwright's sync API keeps an event loop running, which
would break later tests that call asyncio.run().

The page-fetch kind refuses private addresses, so the stack is told (PAGE_FETCH_ALLOWED_HOSTS)
that one 127.0.0.1 port is fine: the port `page_site` serves test pages on."""
from collections.abc import Iterator

import pytest

from basic.ops import stack
from tests.browser.helpers import (
    DESKTOP,
    STACK_ENV,
    ConsolePage,
    PageSite,
    chromium_missing_reason,
    create_users,
    in_ci,
    launch,
)
from tests.live import (
    LiveStack,
    live_stack,
    manage,
    stack_root,  # noqa: F401  (fixture)
)


@pytest.fixture(scope="package")
def browser():
    reason = chromium_missing_reason()
    if reason:
        if in_ci():
            pytest.fail(f"{reason}; CI is set, so the browser tests must run")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="package")
def page_port() -> int:
    """Picked before the stack starts, which is told it may fetch from 127.0.0.1 on this port."""
    return stack.free_port()


@pytest.fixture(scope="package")
def page_site(page_port) -> Iterator[PageSite]:
    """A local web site on `page_port` for the page-fetch kind; tests add pages to it."""
    with PageSite.serving(page_port) as site:
        yield site


@pytest.fixture(scope="package")
def live(browser, stack_root, page_site) -> Iterator[LiveStack]:  # noqa: F811  (the fixture imported above)
    # The site is up before the stack starts, so no process of the stack can take its port.
    env = {**STACK_ENV, "PAGE_FETCH_ALLOWED_HOSTS": f"127.0.0.1:{page_site.port}"}
    with live_stack(stack_root, "browser", concurrency=20, cpu_worker=True, **env) as running:
        create_users(manage, running.env)
        yield running


@pytest.fixture
def context_for(browser, live):
    """New browser contexts (separate cookie jars, so separate sign-ins) closed after the test."""
    contexts = []

    def make(viewport: dict | None = None):
        context = browser.new_context(base_url=live.base_url, viewport=viewport or DESKTOP, accept_downloads=True)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def alice_tab(context_for) -> ConsolePage:
    """The console, signed in as alice through the login form."""
    return ConsolePage.sign_in(context_for(), "alice")
