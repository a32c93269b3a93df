"""The demo shop's bot: RCHAT["BOT"] in project/settings.py (docs/sandbox.md).

``rchat_demo_setup`` gives the demo credential auto-reply rules for greetings, prices,
shipping, opening hours and order numbers; a message none of them answers comes here.
This bot answers questions about sizes with the size chart and says nothing to the
rest. A site's own bot has the same shape: subclass ``rchat.bots.Bot``, override
``answer``, name the class in RCHAT["BOT"].
"""

import re

from rchat import bots
from rchat.bots.rules import phrase_in

#: Words that ask about sizes (matched as rchat's rules match: spaces, case and
#: punctuation ignored, so "ไซส์ M" and "SIZE?" both count).
SIZE_WORDS = ("ไซส์", "ไซซ์", "ขนาดเสื้อ", "size")

#: Chest and length in inches, by size.
SIZES = {"S": (36, 26), "M": (38, 27), "L": (40, 28), "XL": (42, 29), "2XL": (44, 30)}

# A size named on its own ("ไซส์ m", "size XL?"), not letters inside a word: the "s"
# of "size" or the "m" of "I'm" are not sizes.
_SIZE_NAMED = re.compile(r"(?<![A-Za-z'\u2019])(2XL|XXL|XL|S|M|L)(?![A-Za-z])", re.IGNORECASE)


def size_chart():
    rows = "\n".join(f"{size}  {chest} / {length}" for size, (chest, length) in SIZES.items())
    return (
        f"ตารางไซส์เสื้อ รอบอก / ความยาว (นิ้ว)\n{rows}\nSize chart: chest / length in inches, as above."
    )


class ShopBot(bots.Bot):
    """Answers "ไซส์" / "size" with the size chart (the named size first); else nothing."""

    def answer(self, message, thread):
        text = message.text or ""
        if not any(phrase_in(word, text) for word in SIZE_WORDS):
            return None
        named = _SIZE_NAMED.search(text)
        if named is None:
            return bots.Reply.text(size_chart())
        size = named.group(1).upper().replace("XXL", "2XL")
        chest, length = SIZES[size]
        return bots.Reply.text(
            f"ไซส์ {size}: รอบอก {chest} นิ้ว ยาว {length} นิ้วค่ะ / "
            f"Size {size}: chest {chest} in, length {length} in.\n\n{size_chart()}"
        )
