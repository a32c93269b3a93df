"""Inbox and API reads on a large database against the same pages on a small one.

``python -m bench.inbox --database URL --rooms 10000 --messages 1000000``
(``bench.run`` calls it twice: the small baseline database, then the large one).
A database already seeded to the same size is reused; seeding uses COPY.
"""

import argparse
import statistics
import time
from urllib.parse import urlencode

from .common import django_setup, progress, say, write_json

USER = "bench-agent"
BATCH = 50_000
#: What the seeded messages say, in turn: Thai written as Thai is, without spaces
#: between words, some English, and the old "ข้อความ / message" rows.
PHRASES = (
    "สวัสดีครับสนใจสินค้าตัวนี้ครับ",
    "ราคาเท่าไหร่คะ",
    "ส่งของวันไหนครับ",
    "โอนเงินแล้วนะคะแนบสลิปให้แล้ว",
    "ขอบคุณมากค่ะ",
    "Is this still available?",
    "มีสีอื่นไหมคะ",
    "ข้อความ / message",
)
#: Rarer messages, every RARE-th (about 0.08 %): what a search looks for in a haystack.
#: Not near a multiple of 100 (a room's messages): they land in open and closed rooms.
RARE = 1237
RARE_TEXT = "ขอคืนเงินค่ะสินค้าชำรุด Please REFUND my order"
#: Searches timed, by what they show: (page, query). "common" matches one message in
#: eight, "rare" one in RARE, "none" no message (only rooms' names hold it).
SEARCHES = (
    ("search: Thai word, common", "/rchat/inbox/search/", "ข้อความ"),
    ("search: Thai in a run, rare", "/rchat/inbox/search/", "คืนเงิน"),
    ("search: English any case, rare", "/rchat/inbox/search/", "refund"),
    ("search: Thai and digits, none", "/rchat/inbox/search/", "ลูกค้า 12"),
    ("search API: Thai in a run, rare", "/rchat/api/messages/search/", "คืนเงิน"),
    ("room list q: Thai, common", "/rchat/inbox/", "ข้อความ"),
    ("room list q: Thai in a run, rare", "/rchat/inbox/", "คืนเงิน"),
    ("room list q: 2 letters (names only)", "/rchat/inbox/", "12"),
)


def seeded_size():
    from rchat.models import ChatRoom, Message

    return ChatRoom.objects.count(), Message.objects.count()


def seed(rooms, messages):
    """COPY ``rooms`` chat rooms and ``messages`` messages (both directions) into an empty db."""
    from django.db import connection
    from django.utils import timezone

    from rchat.models import Credential

    credential, _ = Credential.objects.get_or_create(
        name="bench-inbox", defaults={"token": "chatday-inbox-token", "status": "active"}
    )
    start = timezone.now() - timezone.timedelta(days=30)
    per_room = max(1, messages // rooms)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(
            "COPY rchat_chatroom (id, credential_id, chat_id, channel, display_name, avatar_url,"
            " status, last_message_at, last_message_preview, unread_count, created_at,"
            " handler, handover_reason)"
            " FROM STDIN"
        ) as copy:
            for n in range(1, rooms + 1):
                at = start + timezone.timedelta(seconds=n * 200)
                copy.write_row(
                    (
                        n,
                        credential.pk,
                        f"inbox-{n}",
                        ("web", "line", "facebook")[n % 3],
                        f"ลูกค้า {n}",
                        "",
                        "open" if n % 5 else "closed",
                        at,
                        f"ข้อความล่าสุด {n}",
                        n % 4,
                        start,
                        "people",
                        "",
                    )
                )
        say(f"  seeded {rooms} chat rooms")
        written = 0
        while written < messages:
            chunk = min(BATCH, messages - written)
            with raw.copy(
                "COPY rchat_message (id, room_id, direction, type, data, text, status,"
                " external_id, dedup_key, extra, attempts, last_error, created_at, updated_at,"
                " sender)"
                " FROM STDIN"
            ) as copy:
                for n in range(written + 1, written + chunk + 1):
                    room = (n - 1) // per_room % rooms + 1
                    inbound = n % 3 != 0
                    phrase = RARE_TEXT if n % RARE == 0 else PHRASES[n % len(PHRASES)]
                    text = f"{phrase} {n}"
                    at = start + timezone.timedelta(seconds=n)
                    copy.write_row(
                        (
                            n,
                            room,
                            "in" if inbound else "out",
                            "text",
                            f'"{text}"',
                            text,
                            "received" if inbound else "sent",
                            f"m{n}",
                            f"id:m{n}" if inbound else "",
                            "{}",
                            0 if inbound else 1,
                            "",
                            at,
                            at,
                            "" if inbound else "person",
                        )
                    )
            written += chunk
            progress("seeded messages", written, messages)
        for table in ("rchat_chatroom", "rchat_message"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT MAX(id) FROM {table}))"
            )
        # VACUUM as well: the benchmark's PostgreSQL may run without autovacuum, and an
        # unvacuumed table has no visibility map (no index-only scans) and a GIN
        # pending list the first searches would have to read.
        cursor.execute("VACUUM ANALYZE rchat_chatroom")
        cursor.execute("VACUUM ANALYZE rchat_message")


def measure(repeats):
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from rchat.models import ChatRoom

    user, _ = get_user_model().objects.get_or_create(
        username=USER, defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    room = ChatRoom.objects.order_by("-last_message_at").first()
    pages = {
        "inbox": "/rchat/inbox/",
        "conversation": f"/rchat/inbox/{room.pk}/",
        "api rooms": "/rchat/api/rooms/",
        "api messages": f"/rchat/api/rooms/{room.pk}/messages/",
    }
    pages.update({name: f"{path}?{urlencode({'q': q})}" for name, path, q in SEARCHES})
    figures = {}
    for name, url in pages.items():
        client.get(url)  # warm caches and connections
        times, queries = [], 0
        for _ in range(repeats):
            with CaptureQueriesContext(connection) as captured:
                clock = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - clock)
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}")
            queries = len(captured.captured_queries)
        figures[name] = {
            "url": url,
            "ms": round(statistics.median(times) * 1000, 2),
            "queries": queries,
            # Every round, in order: run.py pairs them with the other database's.
            "runs": [round(t * 1000, 2) for t in times],
        }
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--rooms", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", required=True, help="the results file's name")
    args = parser.parse_args(argv)
    django_setup(args.database)
    size = seeded_size()
    if size == (0, 0):
        say(f"Seeding {args.rooms} chat rooms and {args.messages} messages (COPY)")
        clock = time.monotonic()
        seed(args.rooms, args.messages)
        say(f"Seeded in {time.monotonic() - clock:.0f} s.")
    elif size != (args.rooms, args.messages):
        raise SystemExit(f"the database holds {size[0]} rooms, {size[1]} messages; drop it")
    else:
        say(f"Reusing the seeded database ({size[0]} rooms, {size[1]} messages).")
    figures = measure(args.repeats)
    write_json(
        args.out,
        {"rooms": args.rooms, "messages": args.messages, "repeats": args.repeats, "pages": figures},
    )
    say(
        "Inbox reads done: "
        + ", ".join(f"{name} {f['ms']} ms / {f['queries']} queries" for name, f in figures.items())
        + f" ({args.rooms} rooms, {args.messages} messages)."
    )


if __name__ == "__main__":
    main()
