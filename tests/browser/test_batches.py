"""A batch on the console: several images in the thumbnails form start one batch, shown as one bar
(from /ws/batches/{id}/) with a disclosure that opens into its members' bars."""
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.helpers import ConsolePage

pytestmark = pytest.mark.browser


def test_several_images_make_one_batch_bar_that_opens_into_its_members(context_for, tmp_path):
    # carol's, so the other tests' list of alice's jobs has no batch in it
    carol_tab = ConsolePage.sign_in(context_for(), "carol")
    page = carol_tab.page
    images = []
    for number, colour in enumerate([(230, 90, 40), (40, 90, 230)]):
        path = tmp_path / f"photo-{number}.png"
        Image.new("RGB", (120 + 40 * number, 90), colour).save(path)
        images.append(path)
    form = carol_tab.start_form("Thumbnails")
    form.get_by_label("Image").set_input_files(images)
    form.get_by_label("Sizes").fill("32x32")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/api/thumbnails/")) as answer:
        form.get_by_role("button", name="Start thumbnails").click()
    assert answer.value.status == 202, answer.value.text()
    batch = answer.value.json()
    row = page.locator(f'.batch[data-batch-id="{batch["id"]}"]')
    expect(row).to_have_attribute("data-status", "done", timeout=60_000)
    expect(row.get_by_role("progressbar", name=f"Progress of batch {batch['id'][:8]}")).to_have_attribute(
        "aria-valuenow", "100")
    expect(row.get_by_role("link", name="Download zip")).to_be_visible()
    members = row.locator(".batch-members > .job")
    expect(members).to_have_count(2)
    expect(members.first).to_be_hidden()  # closed until opened
    row.locator("summary", has_text="2 jobs").click()
    for member in batch["members"]:
        member_row = row.locator(f'.job[data-job-id="{member["id"]}"]')
        expect(member_row).to_be_visible()
        expect(member_row).to_have_attribute("data-status", "done", timeout=30_000)
    # The members are inside the batch, not beside it in the list.
    expect(page.locator("#job-list > .job[data-job-id]").filter(
        has=page.locator(f'[data-job-id="{batch["members"][0]["id"]}"]'))).to_have_count(0)
