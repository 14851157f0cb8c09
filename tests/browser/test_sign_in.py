"""The console needs a signed-in user; the login page and signing out work in the browser."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import PASSWORDS

pytestmark = pytest.mark.browser


def test_sign_in_required_wrong_password_then_sign_in_and_out(context_for, live):
    page = context_for().new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("didn't match")
    expect(page.get_by_label("Username")).to_have_value("alice")

    page.get_by_label("Password").fill(PASSWORDS["alice"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live.base_url}/")
    expect(page.get_by_role("navigation", name="Account")).to_contain_text("alice")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    # The page set the CSRF cookie its REST writes send back.
    assert any(c["name"] == "csrftoken" for c in page.context.cookies())

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    # Nothing along the way logged an error.
    assert errors == []
