"""Chat: tabs in one room see each other's messages live, with who sent them and when."""
import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import ConsolePage

pytestmark = pytest.mark.browser


def join(tab: ConsolePage, room: str) -> None:
    tab.page.get_by_label("Room").fill(room)
    tab.page.get_by_role("button", name="Join").click()
    expect(tab.page.locator("#chat-status")).to_have_text(re.compile(rf"^In #{re.escape(room)} as "))


def say(tab: ConsolePage, text: str) -> None:
    chat = tab.page.get_by_role("region", name="Chat")
    chat.get_by_role("textbox", name="Message").fill(text)
    chat.get_by_role("button", name="Send").click()
    expect(chat.get_by_role("textbox", name="Message")).to_have_value("")


def messages(tab: ConsolePage):
    return tab.page.locator("#chat-log .chat-message")


def test_tabs_in_one_room_exchange_messages_live(context_for):
    room = f"browser-{uuid.uuid4().hex[:8]}"
    alice_context = context_for()
    alice = ConsolePage.sign_in(alice_context, "alice")
    alice_again = ConsolePage.another_tab(alice_context)
    bob = ConsolePage.sign_in(context_for(), "bob")
    for tab in (alice, alice_again, bob):
        join(tab, room)

    say(alice, "hello from alice")
    say(bob, "hi alice, bob here")
    for tab in (alice, alice_again, bob):
        expect(messages(tab)).to_have_count(2)
        expect(messages(tab).locator(".chat-text")).to_have_text(["hello from alice", "hi alice, bob here"])
        expect(messages(tab).locator(".chat-time").first).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    expect(messages(alice).locator(".chat-sender")).to_have_text(["alice (you)", "bob"])
    expect(messages(bob).locator(".chat-sender")).to_have_text(["alice", "bob (you)"])
    expect(messages(bob).nth(1)).to_have_class(re.compile(r"\bmine\b"))

    # Another room hears none of it.
    carol_room = f"{room}-other"
    join(alice_again, carol_room)
    say(bob, "only for the first room")
    expect(messages(alice).locator(".chat-text").last).to_have_text("only for the first room")
    say(alice_again, "anyone here?")
    expect(messages(alice_again).locator(".chat-text")).to_have_text(["anyone here?"])
    expect(messages(bob).locator(".chat-text").last).to_have_text("only for the first room")

    for tab in (alice, alice_again, bob):
        assert tab.errors == []


def test_room_names_are_checked_before_joining(alice_tab):
    page = alice_tab.page
    page.get_by_label("Room").fill("no spaces allowed")
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#chat-room-error")).to_be_visible()
    expect(page.get_by_label("Room")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#chat-status")).to_have_text("In #lobby as alice.")
    assert alice_tab.errors == []
