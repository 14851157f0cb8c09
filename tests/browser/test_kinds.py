"""Every job kind started from its own form on the console, watched live, and its result shown
in its row: thumbnails of an uploaded image, a fetched page (then the same page from the cache),
and a kind with no view of its own. Bad input is refused next to its field, with no job started."""
import io
import re
import uuid
import zipfile

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.helpers import is_job_start

pytestmark = pytest.mark.browser

BAD_REQUEST = re.compile(r"status of 400 \(Bad Request\)")


def jobs_on_server(tab) -> int:
    return tab.page.request.get("/api/jobs/").json()["count"]


def test_thumbnails_of_an_uploaded_image(alice_tab, tmp_path):
    page = alice_tab.page
    image = tmp_path / "sunset.png"
    Image.new("RGB", (200, 100), (230, 90, 40)).save(image)
    form = alice_tab.start_form("Thumbnails")
    form.get_by_label("Image").set_input_files(image)
    form.get_by_label("Sizes").fill("64x64,32x32")

    job_id = alice_tab.start_job("Thumbnails")
    row = alice_tab.job(job_id)
    expect(row.locator(".job-subject")).to_have_text("sunset.png → 64×64, 32×32")
    alice_tab.expect_done(job_id, download="Download zip")

    previews = row.get_by_role("img")
    expect(previews).to_have_count(2)
    page.wait_for_function(
        """id => [...document.querySelectorAll(`.job[data-job-id="${id}"] img`)]
            .every((img) => img.complete && img.naturalWidth > 0)""", arg=job_id)
    shown = previews.evaluate_all("""imgs => imgs.map((img) => ({
        alt: img.alt, path: new URL(img.src).pathname, size: [img.naturalWidth, img.naturalHeight]}))""")
    # Aspect kept: a 2:1 image fits its 64x64 box as 64x32.
    assert shown == [
        {"alt": "sunset-64x64.png, 64×32 px", "path": f"/api/jobs/{job_id}/files/sunset-64x64.png/", "size": [64, 32]},
        {"alt": "sunset-32x32.png, 32×16 px", "path": f"/api/jobs/{job_id}/files/sunset-32x32.png/", "size": [32, 16]},
    ]

    with page.expect_download() as download_info:
        row.get_by_role("link", name=re.compile("Download zip")).click()
    download = download_info.value
    assert download.suggested_filename == f"thumbnails-{job_id}.zip"
    with zipfile.ZipFile(download.path()) as archive:
        assert sorted(archive.namelist()) == ["sunset-32x32.png", "sunset-64x64.png", "sunset.png"]
        assert Image.open(io.BytesIO(archive.read("sunset-64x64.png"))).size == (64, 32)
    assert alice_tab.errors == []


def test_a_text_file_named_png_is_refused_next_to_the_image_field(alice_tab, tmp_path):
    page = alice_tab.page
    bogus = tmp_path / "x.png"
    bogus.write_text("just some text, not a picture\n")
    form = alice_tab.start_form("Thumbnails")
    image = form.get_by_label("Image")
    image.set_input_files(bogus)
    alice_tab.wait_for_job_list()
    rows_before, jobs_before = page.locator(".job").count(), jobs_on_server(alice_tab)

    with page.expect_response(is_job_start) as answer:
        form.get_by_role("button", name="Start thumbnails").click()
    assert answer.value.status == 400
    error = form.locator("#start-thumbnails-image-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not an image")
    expect(image).to_have_attribute("aria-invalid", "true")
    expect(image).to_have_accessible_description(re.compile("not an image"))
    expect(form.get_by_label("Sizes")).to_have_attribute("aria-invalid", "false")
    expect(page.locator("#notices .notice")).to_have_count(0)
    expect(form.get_by_role("button", name="Start thumbnails")).to_be_enabled()
    # No job was started.
    expect(page.locator(".job")).to_have_count(rows_before)
    assert jobs_on_server(alice_tab) == jobs_before

    # A real image then: the error goes away and the job starts.
    good = tmp_path / "fine.png"
    Image.new("RGB", (40, 40), (20, 120, 200)).save(good)
    image.set_input_files(good)
    job_id = alice_tab.start_job("Thumbnails")
    expect(error).to_be_hidden()
    expect(image).to_have_attribute("aria-invalid", "false")
    alice_tab.expect_done(job_id, download="Download zip")
    expect(alice_tab.job(job_id).get_by_role("img")).to_have_count(1)
    # Chromium logs the 400 answer as a console error; that, and only that, is expected here.
    assert alice_tab.unexpected_errors(BAD_REQUEST) == []


def test_fetch_a_page_then_get_it_again_from_the_cache(alice_tab, page_site):
    page = alice_tab.page
    body = (b"<!doctype html><html><head><meta charset=utf-8>"
            b"<title>Tea &amp; <b>biscuits</b> &lt;i&gt;daily&lt;/i&gt;</title></head>"
            b"<body><p>Hello from a test page.</p></body></html>")
    path = f"/tea-{uuid.uuid4().hex[:8]}.html"
    url = page_site.add(path, body)
    form = alice_tab.start_form("Page fetch")

    # No URL: said next to the field; nothing started.
    with page.expect_response(is_job_start) as answer:
        form.get_by_role("button", name="Start page fetch").click()
    assert answer.value.status == 400
    expect(form.locator("#start-page_fetch-url-error")).to_have_text("This field may not be blank.")

    form.get_by_label("URL").fill(url)
    first = alice_tab.start_job("Page fetch")
    expect(form.locator("#start-page_fetch-url-error")).to_be_hidden()
    alice_tab.expect_done(first, download="Download page")
    row = alice_tab.job(first)
    expect(row.locator(".job-subject")).to_have_text(url)
    # The title is text: its markup shows as typed, and no element is made of it.
    title = row.locator(".page-title")
    expect(title).to_have_text("Tea & <b>biscuits</b> <i>daily</i>")
    expect(title.locator("b, i")).to_have_count(0)
    expect(row.locator(".badge-http")).to_have_text("HTTP 200")
    expect(row.locator(".page-bytes")).to_have_text(f"{len(body)} bytes")
    expect(row.locator(".badge-cached")).to_have_count(0)
    assert page_site.hits.count(path) == 1

    with page.expect_download() as download_info:
        row.get_by_role("link", name=re.compile("Download page")).click()
    assert download_info.value.path().read_bytes() == body

    # The same URL again: served from the cache, the site is not asked again.
    second = alice_tab.start_job("Page fetch")
    alice_tab.expect_done(second, download="Download page")
    again = alice_tab.job(second)
    expect(again.locator(".badge-cached")).to_have_text("cached")
    expect(again.locator(".page-title")).to_have_text("Tea & <b>biscuits</b> <i>daily</i>")
    assert page_site.hits.count(path) == 1

    # "Refresh" fetches it again.
    form.get_by_role("checkbox", name="Refresh").check()
    third = alice_tab.start_job("Page fetch")
    alice_tab.expect_done(third, download="Download page")
    expect(alice_tab.job(third).locator(".badge-cached")).to_have_count(0)
    assert page_site.hits.count(path) == 2
    assert alice_tab.unexpected_errors(BAD_REQUEST) == []


def test_a_kind_without_its_own_view_shows_its_result_as_keys_and_values(alice_tab):
    """tests/job_kinds.py registers `test_steps` for the tests: its form is drawn from its
    serializer, and its result shows as a key/value list."""
    form = alice_tab.start_form("Test steps")
    steps = form.get_by_label("Steps")
    expect(steps).to_have_attribute("type", "number")
    expect(steps).to_have_value("3")
    steps.fill("0")
    form.get_by_role("button", name="Start test steps").click()
    expect(form.locator("#start-test_steps-steps-error")).to_have_text(
        "Ensure this value is greater than or equal to 1.")
    steps.fill("2")
    job_id = alice_tab.start_job("Test steps")
    alice_tab.expect_done(job_id, download="Download")
    result = alice_tab.job(job_id).locator(".result-kv")
    expect(result.locator("dt")).to_have_text(["steps"])
    expect(result.locator("dd")).to_have_text(["2"])
    assert alice_tab.unexpected_errors(BAD_REQUEST) == []
