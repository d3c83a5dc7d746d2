"""The one exception both clients raise."""

from __future__ import annotations


class ClientError(Exception):
    """A request the server refused: `code` is the gRPC code name or 'HTTP <status>'."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
