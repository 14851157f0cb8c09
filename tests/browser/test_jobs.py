"""The jobs panel end to end: generate students, start a report, watch it run, download it;
cancel one; see one fail."""
import csv
import io
import re
import shutil

import pytest
from playwright.sync_api import expect

from basic.lifecycle.registry import kinds
from tests.browser.helpers import ConsolePage

pytestmark = pytest.mark.browser


def test_generate_students_start_a_report_watch_it_finish_and_download_it(alice_tab):
    page = alice_tab.page
    total = alice_tab.generate_students(1500)
    expect(page.locator("#student-list li")).to_have_count(5)

    job_id = alice_tab.start_report()
    row = alice_tab.job(job_id)
    expect(row).to_have_attribute("data-status", "running", timeout=10_000)
    expect(row.locator(".job-status")).to_have_text("Running")
    expect(row.get_by_role("button", name=re.compile("Cancel"))).to_be_visible()
    expect(row.get_by_role("link", name=re.compile("Download"))).to_be_hidden()
    # The bar moves through the middle, not just from 0 to 100.
    alice_tab.wait_for_progress(job_id, 20)
    assert alice_tab.progress_value(job_id) < 100
    expect(row.locator(".job-message")).to_have_text(re.compile(r"^Wrote \d+ of \d+ students$"))
    expect(row.locator(".job-elapsed")).to_have_text(re.compile(r"^\d+:\d\d$"))

    alice_tab.expect_done(job_id)
    expect(row.locator(".job-message")).to_have_text(f"Report ready: {total} students")

    with page.expect_download() as download_info:
        row.get_by_role("link", name=re.compile("Download CSV")).click()
    download = download_info.value
    assert download.suggested_filename == f"students-by-age-{job_id}.csv"
    rows = list(csv.reader(io.StringIO(download.path().read_text())))
    assert rows[0] == ["id", "name", "age"]
    assert len(rows) == total + 1
    ages = [int(r[2]) for r in rows[1:]]
    assert ages == sorted(ages)

    assert alice_tab.errors == []


def test_a_start_form_per_job_kind(alice_tab):
    """Each registered kind has its own form: a heading, its description, one input per
    parameter with its label and help, and a Start button."""
    page = alice_tab.page
    forms = page.locator("#kind-forms form")
    assert [f.get_attribute("data-kind") for f in forms.all()] == [kind.name for kind in kinds()]
    for kind in kinds():
        form = alice_tab.start_form(kind.label)
        expect(form.get_by_role("heading", name=kind.label)).to_be_visible()
        expect(form).to_contain_text(kind.description)
        expect(form.get_by_role("button", name=f"Start {kind.label.lower()}", exact=True)).to_be_visible()

    # The report takes nothing: one button, no inputs.
    report = alice_tab.start_form("Students by age report")
    expect(report.locator("input, select, textarea")).to_have_count(0)
    expect(report.get_by_role("button")).to_have_count(1)

    thumbnails = alice_tab.start_form("Thumbnails")
    image = thumbnails.get_by_label("Image")
    expect(image).to_have_attribute("type", "file")
    expect(image).to_have_attribute("accept", "image/jpeg,image/png,image/webp,image/gif")
    expect(image).to_have_accessible_description(re.compile("JPEG, PNG, WebP or GIF"))
    expect(thumbnails.get_by_label("Sizes")).to_have_value("128x128")

    fetch = alice_tab.start_form("Page fetch")
    expect(fetch.get_by_label("URL")).to_have_attribute("type", "url")
    expect(fetch.get_by_label("URL")).to_have_value("")
    refresh = fetch.get_by_role("checkbox", name="Refresh")
    expect(refresh).not_to_be_checked()
    expect(refresh).to_have_accessible_description("Fetch again even if the page is cached.")
    assert alice_tab.errors == []


def test_cancel_a_running_report(alice_tab):
    alice_tab.ensure_students(1500)
    job_id = alice_tab.start_report()
    alice_tab.wait_for_progress(job_id, 5)
    row = alice_tab.job(job_id)
    row.get_by_role("button", name=re.compile("Cancel")).click()
    expect(row).to_have_attribute("data-status", "cancelled", timeout=10_000)
    expect(row.locator(".job-status")).to_have_text("Cancelled")
    expect(row.locator(".job-message")).to_have_text("Cancelled")
    expect(row.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()
    expect(row.get_by_role("link", name=re.compile("Download"))).to_be_hidden()
    assert alice_tab.progress_value(job_id) < 100
    assert alice_tab.errors == []


def test_a_failed_report_shows_red_with_its_error(alice_tab, live):
    """The worker can't write the report (the jobs folder is a file now): the job fails, and says so."""
    reports = live.media_root / "jobs"
    aside = live.media_root / "jobs-aside"
    reports.mkdir(parents=True, exist_ok=True)
    reports.rename(aside)
    reports.write_text("not a folder")
    try:
        job_id = alice_tab.start_report()
        row = alice_tab.job(job_id)
        expect(row).to_have_attribute("data-status", "failed", timeout=10_000)
    finally:
        reports.unlink()
        aside.rename(reports)
        shutil.rmtree(aside, ignore_errors=True)
    expect(row.locator(".job-status")).to_have_text("Failed")
    error = row.get_by_role("alert")
    expect(error).to_be_visible()
    expect(error).to_contain_text("unexpected error")  # the exception itself goes to the log only
    assert row.evaluate("r => getComputedStyle(r).borderLeftColor") == "rgb(185, 28, 28)"
    expect(row.get_by_role("link", name=re.compile("Download"))).to_be_hidden()
    expect(row.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()
    assert alice_tab.errors == []


def test_the_job_list_survives_a_reload_and_shows_jobs_started_elsewhere(alice_tab, context_for):
    alice_tab.ensure_students(1500)
    other_tab = ConsolePage.another_tab(alice_tab.page.context)
    # Started in this tab, the job appears in the other one through the user's event feed.
    job_id = alice_tab.start_report()
    expect(other_tab.job(job_id)).to_be_visible(timeout=10_000)
    other_tab.expect_done(job_id)
    alice_tab.expect_done(job_id)
    alice_tab.page.reload()
    alice_tab.expect_done(job_id)
    # Someone else's jobs never show.
    bob = ConsolePage.sign_in(context_for(), "bob")
    expect(bob.page.locator("#jobs-empty")).to_be_visible()
    expect(bob.job(job_id)).to_have_count(0)
    assert alice_tab.errors == other_tab.errors == bob.errors == []
