"""rchat: connect a Django site to R-Chat (Chatday)."""

__version__ = "0.6.0"
