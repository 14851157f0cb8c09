"""Chat rooms: group names and the channel-layer message type of a chat message."""

# The channel-layer message type that carries a chat message; consumers handle it in `chat_message`.
LAYER_CHAT_MESSAGE = "chat.message"


def chat_group(room: str) -> str:
    return f"chat.{room}"
