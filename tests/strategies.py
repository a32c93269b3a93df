"""Hypothesis strategies for webhook bodies, shared by the property tests and the fault suite."""

import json

from hypothesis import strategies as st

#: Any JSON value, nested a little.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

#: JSON shaped like an R-Chat webhook, every field optional and of any type.
message_like = st.fixed_dictionaries(
    {},
    optional={
        "chat_id": json_values | st.text(min_size=1, max_size=40),
        "message": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "type": json_values | st.sampled_from(["text", "image", "file", "sticker"]),
                "data": json_values,
                "id": json_values | st.text(max_size=300),
                "chat_id": json_values,
            },
        ),
        "timestamp": json_values,
        "channel": json_values,
        "user": json_values,
    },
)


def webhook_bodies(*, max_binary=300):
    """Bodies as bytes: random bytes, random JSON, and message-shaped JSON (UTF-8 and escaped)."""
    return st.one_of(
        st.binary(max_size=max_binary),
        json_values.map(lambda v: json.dumps(v).encode()),
        message_like.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
        message_like.map(lambda v: json.dumps(v).encode()),
    )
