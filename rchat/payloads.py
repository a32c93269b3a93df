"""R-Chat's JSON, in and out: reading webhook bodies, building and checking outbound ones.

The contract (docs/rchat-contract.md) names five message types that rchat understands
in both directions: text, image, file, sticker and location. Anything else is kept
as it came.
"""

KNOWN_TYPES = ("text", "image", "file", "sticker", "location")


# --- Inbound: webhook body -> normalized message ---------------------------------------


# --- Outbound: validation and the Send Message body ------------------------------------
