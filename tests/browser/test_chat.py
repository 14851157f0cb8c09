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


def test_a_dropped_chat_connection_comes_back_with_what_was_said_meanwhile(context_for):
    """Only alice's chat socket drops (the proxy in front of her closes it) and her network stays
    down while bob talks; back online, her tab reconnects with `?after=` and shows what she missed,
    each message once and in order."""
    room = f"browser-{uuid.uuid4().hex[:8]}"
    alice_context = context_for()
    chat_routes = []

    def pass_through(route):
        route.connect_to_server()
        chat_routes.append(route)

    alice_context.route_web_socket(re.compile(r"/ws/chat/"), pass_through)
    alice = ConsolePage.sign_in(alice_context, "alice")
    bob = ConsolePage.sign_in(context_for(), "bob")
    for tab in (alice, bob):
        join(tab, room)
    say(bob, "before the drop")
    expect(messages(alice).locator(".chat-text")).to_have_text(["before the drop"])

    alice_context.set_offline(True)
    chat_routes[-1].close(code=1001, reason="proxy restarting")
    expect(alice.page.locator("#chat-log .chat-system").last).to_have_text("Connection lost; reconnecting…")
    say(bob, "while you were away")
    say(bob, "and this too")
    expect(messages(bob)).to_have_count(3)
    # The retry comes due while she is still offline: the tab waits for the network instead of
    # making an attempt that can only fail (the `errors == []` below would catch one).
    waiting = alice.page.locator(f'#console-log .frame[data-url^="/ws/chat/{room}/"] .frame-info')
    expect(waiting.filter(has_text="offline; waiting for the network")).to_have_count(1)
    alice_context.set_offline(False)

    expect(messages(alice).locator(".chat-text")).to_have_text(
        ["before the drop", "while you were away", "and this too"], timeout=20_000)
    expect(alice.page.locator("#chat-log .chat-system").last).to_have_text(
        "Reconnected. Messages sent while you were away follow.")
    resumed = alice.page.locator(f'#console-log .frame[data-url^="/ws/chat/{room}/?after="]')
    expect(resumed.filter(has_text="while you were away")).to_have_count(1)
    say(bob, "live again")
    expect(messages(alice).locator(".chat-text").last).to_have_text("live again")
    expect(messages(alice)).to_have_count(4)
    assert alice.errors == [] and bob.errors == []
