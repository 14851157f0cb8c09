"""`make screenshots`: pictures of the console for docs/, taken in Debian's Chromium from the real
stack (a private Redis, Daphne, a gevent worker), with a report mid-way and after it finished.

    docs/console-running.png   a report running, with chat and the socket console busy
    docs/console-done.png      the same page once the report is done
    docs/console-narrow.png    the top of the page in a 375 px wide window
"""
import os
import re
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from basic.ops import stack
from tests.browser.helpers import STACK_ENV, ConsolePage, chromium_missing_reason, create_users, launch

DOCS = stack.BASE_DIR / "docs"
WIDE = {"width": 1400, "height": 1000}
NARROW = {"width": 375, "height": 812}


def chat(tab: ConsolePage, text: str) -> None:
    panel = tab.page.get_by_role("region", name="Chat")
    panel.get_by_role("textbox", name="Message").fill(text)
    panel.get_by_role("button", name="Send").click()
    expect(panel.locator(".chat-text", has_text=text)).to_be_visible()


def take(tab: ConsolePage, name: str) -> None:
    tab.page.evaluate("window.scrollTo(0, 0)")
    tab.page.screenshot(path=DOCS / name, full_page=True, animations="disabled")
    print(f"wrote docs/{name}")


def shoot(base_url: str) -> None:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        alice = ConsolePage.sign_in(browser.new_context(base_url=base_url, viewport=WIDE), "alice")
        bob = ConsolePage.sign_in(browser.new_context(base_url=base_url, viewport=WIDE), "bob")
        page = alice.page

        alice.generate_students(2500)
        students = page.get_by_role("region", name="Students")
        students.get_by_label("Name").fill("Ada Lovelace")
        students.get_by_label("Age").fill("36")
        students.get_by_role("button", name="Add student").click()
        expect(page.locator("#student-result")).to_have_text("Added Ada Lovelace, 36.")
        first = alice.start_report()
        alice.expect_done(first)
        page.get_by_label("Random students to generate").fill("1500")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#generate-result")).to_have_text(re.compile("^Created 1,500"))

        chat(bob, "Morning! Is the by-age report for the board ready?")
        chat(alice, "Running a fresh one now, with today's 1,500 new students.")
        console = page.get_by_role("region", name="Socket console")
        console.get_by_label("JSON frame").fill('{"type": "ping"}')
        console.get_by_role("button", name="Send").click()
        expect(page.locator("#console-log .frame-in", has_text='"pong"')).to_have_count(1)

        running = alice.start_report()
        alice.wait_for_progress(running, 45)
        take(alice, "console-running.png")
        alice.expect_done(running)
        chat(bob, "Got the CSV, thanks!")
        take(alice, "console-done.png")

        narrow = ConsolePage.sign_in(browser.new_context(base_url=base_url, viewport=NARROW), "alice")
        narrow.page.screenshot(path=DOCS / "console-narrow.png", animations="disabled")
        print("wrote docs/console-narrow.png")
        problems = alice.errors + bob.errors + narrow.errors
        browser.close()
    if problems:
        raise SystemExit(f"the page logged errors: {problems}")


def main() -> None:
    reason = chromium_missing_reason()
    if reason:
        raise SystemExit(reason)
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as scratch:
        root = Path(scratch)
        redis = None
        if not os.environ.get("REDIS_URL"):
            port = stack.free_port()
            redis = stack.start_redis(port, root / "redis")
            os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        from tests.live import live_stack, manage

        try:
            with live_stack(root, "screenshots", concurrency=10, **STACK_ENV) as live:
                create_users(manage, live.env)
                shoot(live.base_url)
        finally:
            if redis is not None:
                stack.stop(redis)


if __name__ == "__main__":
    sys.exit(main())
