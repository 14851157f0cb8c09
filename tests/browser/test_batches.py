"""A batch on the console: several images in the thumbnails form start one batch, shown as one bar
(from /ws/batches/{id}/) with a disclosure that opens into its members' bars."""
import json
import re
import time

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.helpers import ConsolePage

pytestmark = pytest.mark.browser


def two_images(tmp_path) -> list:
    images = []
    for number, colour in enumerate([(230, 90, 40), (40, 90, 230)]):
        path = tmp_path / f"photo-{number}.png"
        Image.new("RGB", (120 + 40 * number, 90), colour).save(path)
        images.append(path)
    return images


def test_several_images_make_one_batch_bar_that_opens_into_its_members(context_for, tmp_path):
    # carol's, so the other tests' list of alice's jobs has no batch in it
    carol_tab = ConsolePage.sign_in(context_for(), "carol")
    page = carol_tab.page
    form = carol_tab.start_form("Thumbnails")
    form.get_by_label("Image").set_input_files(two_images(tmp_path))
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


def test_a_batch_snapshot_that_arrives_after_its_members_ended_does_not_set_them_back(context_for, tmp_path):
    """The batch socket's snapshot is read when it opens; the members' own events reach the page on
    the user feed. A snapshot that arrives late (here: held back until the members ended) must not
    set an ended member back to what its row said then, or the row stays "scheduled" for good."""
    context = context_for()
    held: list = []
    sockets: list = []

    def hold_batch_frames(route):
        sockets.append(route)
        route.connect_to_server().on_message(lambda message: held.append(message))

    context.route_web_socket(re.compile(r"/ws/batches/"), hold_batch_frames)
    carol_tab = ConsolePage.sign_in(context, "carol")
    page = carol_tab.page
    # Started two seconds from now, so the snapshot (read as the batch socket opens) is surely
    # behind the members' ends.
    page.route(re.compile(r"/api/thumbnails/$"),
               lambda route: route.continue_(url=f"{route.request.url}?delay_seconds=2"))
    form = carol_tab.start_form("Thumbnails")
    form.get_by_label("Image").set_input_files(two_images(tmp_path))
    form.get_by_label("Sizes").fill("32x32")
    with page.expect_response(lambda r: r.request.method == "POST" and "/api/thumbnails/" in r.url) as answer:
        form.get_by_role("button", name="Start thumbnails").click()
    assert answer.value.status == 202, answer.value.text()
    batch = answer.value.json()
    row = page.locator(f'.batch[data-batch-id="{batch["id"]}"]')
    members = [row.locator(f'.job[data-job-id="{member["id"]}"]') for member in batch["members"]]
    for member_row in members:  # moved by the user feed alone
        expect(member_row).to_have_attribute("data-status", "done", timeout=60_000)
    expect(row).to_have_attribute("data-status", "scheduled")
    deadline = time.monotonic() + 30
    while not any(json.loads(m)["type"] == "batch.done" for m in held) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert any(json.loads(m)["type"] == "batch.done" for m in held), "the batch did not end within 30 s"
    snapshot = json.loads(held[0])
    assert snapshot["type"] == "batch.snapshot" and {m["status"] for m in snapshot["members"]} == {"scheduled"}

    assert len(sockets) == 1
    for message in held:  # the batch's frames, in their order, late
        sockets[0].send(message)
    expect(row).to_have_attribute("data-status", "done")
    for member_row in members:
        expect(member_row).to_have_attribute("data-status", "done")
    assert carol_tab.errors == []
