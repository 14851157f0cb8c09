"""The jobs panel end to end: generate students, start a report, watch it run, download it;
cancel one; delete a finished one; see one fail."""
import csv
import io
import re
import shutil

import pytest
from playwright.sync_api import expect

from basic.jobs.registry import kinds
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


def test_delete_a_finished_report(alice_tab):
    """Only a finished job has a Delete button; it asks once more, then the job is gone for good."""
    page = alice_tab.page
    alice_tab.ensure_students(1500)
    job_id = alice_tab.start_report()
    short = job_id[:8]
    row = alice_tab.job(job_id)
    expect(row).to_have_attribute("data-status", "running", timeout=10_000)
    delete = row.get_by_role("button", name=re.compile(f"delete job {short}$", re.IGNORECASE))
    expect(delete).to_be_hidden()
    alice_tab.expect_done(job_id)
    expect(delete).to_be_visible()
    expect(delete).to_have_accessible_name(f"Delete job {short}")

    # The first click only asks; Escape takes the question back.
    delete.click()
    expect(delete).to_have_accessible_name(f"Confirm delete job {short}")
    expect(delete).to_have_text("Confirm delete")
    delete.press("Escape")
    expect(delete).to_have_accessible_name(f"Delete job {short}")
    expect(row).to_be_visible()

    delete.click()
    with page.expect_response(lambda r: r.request.method == "DELETE") as answer:
        row.get_by_role("button", name=f"Confirm delete job {short}").click()
    assert answer.value.status == 204
    expect(row).to_have_count(0)
    assert page.request.get(f"/api/jobs/{job_id}/").status == 404
    page.reload()
    alice_tab.expect_connected()
    alice_tab.wait_for_job_list()  # the list is the API's, without the job
    listed = [job["id"] for job in page.request.get("/api/jobs/").json()["results"]]
    assert job_id not in listed
    assert [r.get_attribute("data-job-id") for r in page.locator("#job-list .job").all()] == listed
    assert alice_tab.errors == []


JOB_REFUSED = re.compile(r"status of (409 \(Conflict\)|500 \(Internal Server Error\)|404 \(Not Found\))")


def test_a_refused_delete_is_shown_in_the_row_and_the_button_works_again(alice_tab):
    page = alice_tab.page
    alice_tab.ensure_students(1)
    job_id = alice_tab.start_report()
    short = job_id[:8]
    alice_tab.expect_done(job_id)
    row = alice_tab.job(job_id)
    detail = "The job is running; cancel it first, then delete it once it has stopped."
    answers = [{"status": 409, "json": {"detail": detail}},
               {"status": 500, "body": "<h1>Server Error</h1>Traceback …", "content_type": "text/html"}]

    def refuse(route):
        if route.request.method == "DELETE" and answers:
            route.fulfill(**answers.pop(0))
        else:
            route.fallback()

    page.route(f"**/api/jobs/{job_id}/", refuse)
    row.get_by_role("button", name=f"Delete job {short}").click()
    row.get_by_role("button", name=f"Confirm delete job {short}").click()
    alert = row.get_by_role("alert")
    expect(alert).to_have_text(f"Couldn't delete: {detail}")
    delete = row.get_by_role("button", name=f"Delete job {short}")
    expect(delete).to_be_enabled()
    expect(row).to_have_attribute("data-status", "done")

    # An answer without a JSON detail: a plain sentence, no status code, no stack.
    delete.click()
    expect(alert).to_be_hidden()
    row.get_by_role("button", name=f"Confirm delete job {short}").click()
    expect(alert).to_be_visible()
    expect(alert).not_to_contain_text("500")
    expect(alert).not_to_contain_text("Traceback")
    expect(delete).to_be_enabled()

    # The button works again: now the real API deletes it.
    delete.click()
    row.get_by_role("button", name=f"Confirm delete job {short}").click()
    expect(row).to_have_count(0)
    assert page.request.get(f"/api/jobs/{job_id}/").status == 404
    page.unroute(f"**/api/jobs/{job_id}/")
    assert alice_tab.unexpected_errors(JOB_REFUSED) == []


def test_a_job_deleted_in_another_tab_leaves_quietly(alice_tab):
    """The other tab still shows the job; its Delete finds it gone (404) and just drops the row."""
    alice_tab.ensure_students(1)
    other_tab = ConsolePage.another_tab(alice_tab.page.context)
    job_id = alice_tab.start_report()
    short = job_id[:8]
    alice_tab.expect_done(job_id)
    other_tab.expect_done(job_id)
    row = alice_tab.job(job_id)
    row.get_by_role("button", name=f"Delete job {short}").click()
    row.get_by_role("button", name=f"Confirm delete job {short}").click()
    expect(row).to_have_count(0)

    stale = other_tab.job(job_id)
    expect(stale).to_be_visible()
    stale.get_by_role("button", name=f"Delete job {short}").click()
    stale.get_by_role("button", name=f"Confirm delete job {short}").click()
    expect(stale).to_have_count(0)
    expect(stale.get_by_role("alert")).to_have_count(0)
    assert alice_tab.errors == []
    assert other_tab.unexpected_errors(JOB_REFUSED) == []


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
