"""What the chats say: messages, names, groups, keys, the variations each
seed draws (``variety_of``)."""

from __future__ import annotations

EN = [
    "Are you free this weekend?",
    "Sounds good to me",
    "I just landed, will call you in ten minutes.",
    "Running a bit late, sorry! Traffic is terrible today.",
    "Can you send me the slides from this morning? I want to go over them again.",
    "Let me check my calendar and get back to you tonight.",
    "Saturday?",
    "OK",
    "Thanks!",
    "Meeting moved to 4:30, room B2",
    "Did you see the game last night",
    "Perfect, see you there",
    "I'll bring the charger",
    "Happy birthday! Hope you have a wonderful day.",
    "Where are we meeting?",
    "The train is delayed again",
    "Just got home",
    "Can we do it tomorrow instead",
    "No worries at all",
    "Booked the table for 8",
]
ZH = [
    "好呀",
    "在吗？",
    "收到，谢谢！",
    "明天一起吃饭吗？",
    "我刚到公司，等会儿给你回电话",
    "周末天气不错，要不要去爬山？我查了一下，周六上午没有雨。",
    "晚上七点在老地方见",
    "记得带伞，下午可能会下雨",
    "文件已经发到你邮箱了，麻烦查收一下",
    "我买了两张 Friday 晚上的电影票",
    "订单号是 20261129，已经发货了",
    "这个方案整体没问题，预算那部分还要再确认一下",
    "好的",
    "哈哈哈哈",
    "路上有点堵，晚十分钟",
]
# Slack-like threads also draw texts that end in a time and bare numbers (a
# name row's "name 10:30" shape, a reaction count's): the thread reader must
# keep them as messages. Not in the seeds of the committed set (0 and 4), whose
# shots stay as they were drawn; any other seed draws them.
SLACK_EN = [
    "See you at 10:30",
    "Standup moved to 9:30",
    "Deploy starts at 4:15",
    "2",
    "100",
    "42",
]
SLACK_ZH = ["明天 9:30 开会", "改到 14:00", "3", "20"]
COMMITTED_SEEDS = (0, 4)
# Each seed with committed shots draws what it drew when they were committed
# (its shots redraw byte for byte): 0 and 4 none of the variety below, 11
# round 1, 13, 14 and 20 round 2 (captions, reactions, receipts, unread
# bands); 25 and 27 round 3 (Telegram's pinned message bar, a typing
# indicator, WeChat's recalled-message line; in threads the name-to-time
# gap, the jumbo emoji's size and a second reaction vary); every other seed
# all of it (round 4, ``Round4`` in script.py: link previews, one-character
# names, groups where only the user's messages are in view, 1:1 quotes of
# the talker's message under the talker's name, iMessage screens of photos
# and stickers only, typing dots in more apps, names that share a prefix);
# 60 round 4; every other seed round 5 too (Telegram says that the talker is
# typing in its header, as the app does, not with dots in the chat).
VARIETY_OF_SEED = {0: 0, 4: 0, 11: 1, 13: 2, 14: 2, 20: 2, 25: 3, 27: 3, 60: 4}
LATEST_VARIETY = 5


def variety_of(seed: int) -> int:
    return VARIETY_OF_SEED.get(seed, LATEST_VARIETY)


# What real apps vary and the seeds of the committed set (0, 4) never draw:
# every other seed draws it (``variety``), with truth for each field. In
# bubbles: texts ending in a time or a bare number ("+1"), 12-hour times on
# iOS ("10:22 AM"), an "edited" label before the time (Telegram, WhatsApp),
# "Forwarded" over a WhatsApp bubble, photo captions (WhatsApp), reactions
# on a bubble's edge (WhatsApp, Messenger), "Delivered" / "Read" under
# iMessage bubbles, an "N unread messages" band. In threads: the signed-in user writing
# in channels, private channels (a lock, a topic under the name), code
# blocks, file cards, "(edited)", status emoji after names, an app's "APP"
# badge.
VARIETY_EN = ["See you at 10:30", "Standup moved to 9:30", "42", "+1"]
VARIETY_ZH = ["明天 9:30 开会", "3", "+1"]
CODE = [
    "make test",
    "git push origin main",
    "SELECT count(*) FROM users;",
    "npm run build",
    "curl -s localhost:8080/health",
]
FILES = [
    ("PDF", "Q3-report.pdf", "PDF · 2 MB"),
    ("XLS", "budget_2027.xlsx", "Excel · 48 KB"),
    ("ZIP", "logs-1204.zip", "Zip · 11 MB"),
    ("DOC", "会议纪要.docx", "Word · 96 KB"),
]
STATUS_EMOJI = ["🌴", "🤒", "🏠", "📅", "🎧"]
BOTS = ["GitHub", "Jira"]
TOPICS_EN = ["Launch plan for Q4", "Design reviews on Thursdays", "Ship it"]
TOPICS_ZH = ["设计评审 每周四", "发布计划"]
EMOJI_TEXT = ["Sounds good 👍", "Haha 😂", "See you soon 🙂", "好的👌", "Love it ❤️"]
EMOJI_ONLY = ["😂😂", "👍", "🎉🎉🎉", "❤️"]
NAMES_EN = ["Emma Wilson", "Tom Baker", "Sophie", "Lucas Martin", "Priya Shah", "Dan"]
NAMES_ZH = ["张伟", "李娜", "王老师", "陈晨", "妈妈", "小刘"]
GROUPS = ["Weekend hikers", "Family", "周末爬山群", "项目组", "Book club"]
MEMBERS_EN = ["Anna", "Ben", "Chloe", "David", "Mia"]
MEMBERS_ZH = ["刘洋", "赵敏", "孙浩", "周婷", "吴磊"]
KEY_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
SUGGESTIONS = [("I", "The", "I'm"), ("Thanks", "Yes", "OK"), ("好的", "我", "在")]
SUBTITLES = ["online", "last seen today at 09:12", "typing...", "last seen recently"]

# Round 4. A link preview: (the URL typed, the card's title, its description
# or site name, the domain it shows); the card is the app's, not text.
LINKS = [
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "Rick Astley - Never Gonna Give You Up",
     "YouTube", "youtube.com"),
    ("https://github.com/ctxd/ctxd/pull/42", "Race strategies per screenshot by ctxd",
     "GitHub", "github.com"),
    ("https://www.bbc.co.uk/news/technology", "Technology - BBC News", "BBC News", "bbc.co.uk"),
    ("https://airbnb.com/rooms/81234", "Cabin by the lake - Airbnb", "Airbnb", "airbnb.com"),
    ("https://maps.app.goo.gl/x7Yq2", "Blue Bottle Coffee", "Google Maps", "maps.app.goo.gl"),
]  # fmt: skip
LINK_WORDS_EN = ["Look at this", "This one?", "Found it", ""]
LINK_WORDS_ZH = ["你看这个", "就是这家", ""]
ONE_CHAR_NAMES = ["妈", "爸", "K"]
# names that share a prefix, both in one chat: a reader that matches a name
# by its start takes one for the other
PREFIX_NAMES_EN = ("Sam", "Samantha")
PREFIX_NAMES_ZH = ("小王", "小王子")
STICKERS = ["🐱", "🎉", "👍", "🥳", "🐶"]
