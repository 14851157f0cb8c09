"""What the page says when a job cannot be started. The server side of 503 and 429 is tested in
tests/api and tests/integration; here only the page's handling of those answers is under test, so
the trigger's answer is substituted in the browser."""
import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

REFUSED = re.compile(r"status of (503 \(Service Unavailable\)|429 \(Too Many Requests\))")


@pytest.mark.parametrize("status, detail", [
    (503, "The job queue is unreachable, so the job was not started: Connection refused."),
    (429, "Request was throttled. Expected available in 42 seconds."),
])
def test_a_refused_start_is_explained_and_the_button_works_again(alice_tab, status, detail):
    page = alice_tab.page

    def refuse(route):
        if route.request.method == "POST":
            route.fulfill(status=status, json={"detail": detail})
        else:
            route.fallback()

    page.route("**/api/jobs/", refuse)
    button = page.get_by_role("button", name="Start students by age report")
    button.click()
    alert = page.locator("#notices .notice-error")
    expect(alert).to_have_count(1)
    expect(alert).to_have_attribute("role", "alert")
    expect(alert).to_contain_text(f"not started: {detail}")
    expect(button).to_be_enabled()
    alert.get_by_role("button", name="Dismiss").click()
    expect(alert).to_have_count(0)
    # Not a field's error: nothing is shown next to the form's fields.
    expect(page.locator("#kind-forms .field-error:visible")).to_have_count(0)
    page.unroute("**/api/jobs/")
    assert alice_tab.unexpected_errors(REFUSED) == []
