"""The chat example in Chromium: two browser contexts (two people) connect, subscribe, send
and receive, then both come back by themselves after Roomcast restarts."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import ChatStack, screenshot

TIMEOUT_MS = 30_000


def join(browser: Any, stack: ChatStack, name: str) -> Any:
    context = browser.new_context(viewport={"width": 900, "height": 700})
    page = context.new_page()
    page.goto(stack.page_url)
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Join the lobby").click()
    expect(page.locator("#status")).to_have_text(f"Connected as {name}", timeout=TIMEOUT_MS)
    return page


def say(page: Any, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("textbox", name="Message")).to_have_value("", timeout=TIMEOUT_MS)


def test_two_people_chat_and_recover_after_a_restart(browser: Any, chat_stack: ChatStack) -> None:
    alice = join(browser, chat_stack, "alice")
    bob = join(browser, chat_stack, "bob")
    try:
        for page in (alice, bob):
            expect(page.locator("#online")).to_have_text("Online: alice, bob", timeout=TIMEOUT_MS)

        say(alice, "hello bob")
        expect(bob.locator("#messages li").last).to_have_text("alice:hello bob")
        say(bob, "hi alice")
        expect(alice.locator("#messages li").last).to_have_text("bob:hi alice")
        # Each line once on both sides: history on subscribe and live pushes do not repeat.
        for page in (alice, bob):
            for line in ("alice:hello bob", "bob:hi alice"):
                expect(page.locator("#messages li").filter(has_text=line)).to_have_count(1)
        screenshot(alice, "chat-alice")
        screenshot(bob, "chat-bob")

        chat_stack.restart_roomcast()
        for page in (alice, bob):
            expect(page.locator("#status")).to_contain_text("Connected as", timeout=TIMEOUT_MS)
            expect(page.locator("#notice")).to_contain_text("Back online", timeout=TIMEOUT_MS)
        say(bob, "still here after the restart")
        expect(alice.locator("#messages li").last).to_have_text(
            "bob:still here after the restart", timeout=TIMEOUT_MS
        )
        screenshot(alice, "chat-after-restart")
    finally:
        alice.context.close()
        bob.context.close()


def test_a_bad_name_is_refused_in_the_page(browser: Any, chat_stack: ChatStack) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(chat_stack.page_url)
        page.get_by_label("Your name").fill("<script>")
        page.get_by_role("button", name="Join the lobby").click()
        # The browser's own pattern check stops the form; nothing connects.
        expect(page.locator("#room")).to_be_hidden()
        expect(page.locator("#status")).to_have_text("Not connected")
    finally:
        context.close()
