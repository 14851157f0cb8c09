"""The page works in a narrow window, and every control has an accessible name."""
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.helpers import ConsolePage

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 740}

# Every interactive element, and the name a screen reader would announce for it.
UNLABELLED_CONTROLS = """() => {
    const named = (el) => {
        if (el.getAttribute("aria-label")?.trim()) return true;
        const by = el.getAttribute("aria-labelledby");
        if (by && by.split(/\\s+/).some((id) => document.getElementById(id)?.textContent.trim())) return true;
        if (el.labels && [...el.labels].some((label) => label.textContent.trim())) return true;
        if (["BUTTON", "A"].includes(el.tagName) && el.textContent.trim()) return true;
        return false;
    };
    return [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button, a[href]")]
        .filter((el) => !named(el))
        .map((el) => el.outerHTML.slice(0, 120));
}"""


def test_narrow_window_has_no_sideways_scroll_and_every_control_is_named(context_for, page_site, tmp_path):
    tab = ConsolePage.sign_in(context_for(viewport=PHONE), "alice")
    page = tab.page
    tab.ensure_students(200)
    job_id = tab.start_report()
    tab.expect_done(job_id)
    # A result of each kind in the list: thumbnails (a very wide one too) and a page with a long title.
    image = tmp_path / "wide.png"
    Image.new("RGB", (1600, 100), (90, 90, 200)).save(image)
    thumbnails = tab.start_form("Thumbnails")
    thumbnails.get_by_label("Image").set_input_files(image)
    thumbnails.get_by_label("Sizes").fill("1024x1024,256x256,64x64")
    job_id = tab.start_job("Thumbnails")
    tab.expect_done(job_id, download="Download zip")
    expect(tab.job(job_id).get_by_role("img")).to_have_count(3)
    long_title = " ".join(["Averyveryverylongwordwithoutanybreaks"] * 4)
    url = page_site.add(f"/{'long-path-' * 12}.html", f"<title>{long_title}</title>".encode())
    tab.start_form("Page fetch").get_by_label("URL").fill(url)
    job_id = tab.start_job("Page fetch")
    tab.expect_done(job_id, download="Download page")
    page.get_by_role("region", name="Chat").get_by_role("textbox", name="Message").fill("from a phone")
    page.get_by_role("region", name="Chat").get_by_role("button", name="Send").click()
    expect(page.locator("#chat-log .chat-message")).to_have_count(1)

    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # Nothing in the jobs panel sticks out of it (the job list scrolls only up and down).
    jobs = page.get_by_role("region", name="Jobs")
    assert jobs.evaluate("""panel => [...panel.querySelectorAll("*")]
        .filter((el) => el.getBoundingClientRect().right > panel.getBoundingClientRect().right + 0.5)
        .map((el) => el.outerHTML.slice(0, 80))""") == []
    assert page.locator("#job-list").evaluate("list => list.scrollWidth <= list.clientWidth")
    for name in ("Jobs", "Students", "Chat", "Socket console"):
        region = page.get_by_role("region", name=name)
        expect(region).to_be_visible()
        box = region.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (name, box)
    # The connection state stays in view while scrolling.
    page.get_by_role("region", name="Socket console").scroll_into_view_if_needed()
    expect(page.locator("#connection")).to_be_in_viewport()
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    assert tab.errors == []


def test_every_control_is_named_on_the_sign_in_page(context_for):
    page = context_for().new_page()
    page.goto("/accounts/login/")
    assert page.evaluate(UNLABELLED_CONTROLS) == []
