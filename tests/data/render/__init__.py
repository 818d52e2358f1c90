"""Render chat screenshots that look like the real apps, with their truth.

    .venv/bin/python tests/data/render_apps.py     # writes tests/data/apps/
    .venv/bin/python tests/data/render_apps.py --seed N --out DIR

The modules: ``canvas`` (the 2x canvas, fonts, text and emoji, the scale
down, a dp box in pixels), ``apps`` (each app's look), ``texts`` (what the
chats say, the variations of each seed), ``frame`` (wallpaper, status bar,
header, input bar, keyboard, navigation bar), ``script`` (a bubble chat's
items), ``chat`` (bubbles drawn with their truth), ``extras`` (round 4's
link cards, Messenger's reply label, stickers, typing dots),
``bubble_apps`` (one shot of a bubble app), ``thread`` (one shot of a Slack-like thread),
``cli`` (the shots of a seed and the command line).

``tests/data/chats`` (make_chats.py) holds flat boxes on flat backgrounds;
this set draws what the apps draw, so that the local strategy is measured on
what it meets: WhatsApp (light, iOS-like; dark, Android-like), Telegram dark,
WeChat (1:1 and group), iMessage (light and dark), LINE and Messenger, 720 to
1440 px wide. Each shot has a status bar (iOS or Android), a header (back
button with an unread badge, avatar with initials, the name and a subtitle,
or WeChat's centred title, or iMessage's centred avatar with the name under
it), the app's wallpaper (doodles, a pattern, a flat colour), bubbles with
tails, in-bubble times and read ticks (WhatsApp, Telegram), times beside the
bubble (LINE), date pills, system lines (the encryption notice, "X joined"),
group senders (in the bubble, or above it next to an avatar), quoted
replies, photo and voice bubbles, emoji, an input bar with its placeholder
or an unsent draft, an open keyboard with its suggestion strip on about a
third of the shots, and a navigation bar or home indicator. Bubbles that
the header or the input bar cut are drawn and listed as ``partial`` (the
eval neither wants nor forbids them).

Everything is drawn at twice the size and scaled down (Lanczos), so edges
are anti-aliased like a phone's. The PNGs are committed: the tests need no
font. This script needs Pillow and the Noto CJK and Noto Color Emoji fonts
(Debian: ``apt-get install fonts-noto-cjk fonts-noto-color-emoji``).
Output is deterministic for a given Pillow and font version.

Truth, ``NN-<app>-<width>.json``::

    {"app", "theme", "width", "height", "user_side": "right",
     "talker": str | null, "group": str | null,
     "user": str | null,            # the signed-in user's name, when shown
     "bubbles": [{"speaker", "side", "bbox", "text", "kind",
                  "sender": str | null, "time": str | null,
                  "quote": {"sender", "text"} | null,
                  "file"?: str}],   # a Slack file card's name (kind "file")
     "partial": [[x1, y1, x2, y2], ...],
     "chrome": [every other text drawn: bars, badge, subtitle, pills,
                system lines, receipts, keys, suggestions, placeholder, draft,
                labels ("Edited", "Forwarded", "(edited)", "APP")],
     "draft": str | null,           # the input bar's unsent text
     "textless"?: [{"what", "bbox"}]}  # round 4: drawn with no text, no
                                    # message ("typing" dots, a "link picture")

A bubble's ``text`` is what its sender typed: a code block's code is part of
it, a file card's name is not (``kind: "file"``), a photo's caption is its
text (``kind: "photo"``); an app's labels and a reaction are not; a link's
preview card is the app's (its title, site and domain are chrome), the
bubble's text is what was typed (the URL and any words). A quote's
``sender`` is who wrote the quoted message as the bubble names them: "You"
for the user's, the group member, or in a 1:1 the talker's name (Messenger:
the first name, from "You replied to Emma"). A sticker is a bubble of
``kind: "sticker"`` with no text. The signed-in user's messages are the
user's (``speaker: "user"``) also where no pixel tells them from anyone's
(a Slack channel).

Seeds with committed shots draw what they drew then (``texts.variety_of``);
every other seed draws round 4 too: link previews (WhatsApp, Telegram),
one-character names (妈, 爸, K) as WeChat and LINE talkers and group
senders, WhatsApp and WeChat groups with only the user's messages in view,
1:1 quotes of the talker's message under the talker's name, iMessage
screens of photos and stickers only, typing dots in WhatsApp, Telegram,
iMessage, Messenger and LINE ("X is typing…" in threads), and names that
share a prefix (Sam and Samantha) in a group or a DM. Round 5 (every seed
but 60, whose shots are committed): Telegram draws no typing dots in the
chat but says "typing…" in its header, as the app does.
"""
