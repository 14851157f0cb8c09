"""The students panel: adding one shows the server's validation errors next to their fields."""
import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

BAD_REQUEST = re.compile(r"status of 400 \(Bad Request\)")


def test_add_a_student_with_inline_validation_errors(alice_tab):
    page = alice_tab.page
    panel = page.get_by_role("region", name="Students")
    name, age = panel.get_by_label("Name"), panel.get_by_label("Age")
    before = alice_tab.student_total()

    age.fill("200")
    panel.get_by_role("button", name="Add student").click()
    expect(page.locator("#student-name-error")).to_have_text("This field may not be blank.")
    expect(page.locator("#student-age-error")).to_have_text("Ensure this value is less than or equal to 150.")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(age).to_have_attribute("aria-invalid", "true")
    # The error is tied to its field for screen readers.
    assert "student-age-error" in age.get_attribute("aria-describedby")

    name.fill("Ada Lovelace")
    age.fill("")
    panel.get_by_role("button", name="Add student").click()
    expect(page.locator("#student-name-error")).to_be_hidden()
    expect(page.locator("#student-age-error")).to_have_text("This field is required.")

    age.fill("36")
    panel.get_by_role("button", name="Add student").click()
    expect(page.locator("#student-result")).to_have_text("Added Ada Lovelace, 36.")
    expect(page.locator("#student-age-error")).to_be_hidden()
    expect(age).to_have_attribute("aria-invalid", "false")
    expect(name).to_have_value("")
    expect(page.locator("#student-total")).to_have_attribute("data-count", str(before + 1))
    expect(page.locator("#student-list li").first).to_have_text(re.compile(r"Ada Lovelace\s*36"))

    page.get_by_label("Random students to generate").fill("0")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#generate-count-error")).to_have_text("Ensure this value is greater than or equal to 1.")
    # Chromium logs each 400 answer as a console error; those, and only those, are expected here.
    assert alice_tab.unexpected_errors(BAD_REQUEST) == []
    assert len(alice_tab.errors) == 3
