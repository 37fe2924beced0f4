"""Transport: ZeroMQ sockets served from an asyncio loop, and the msgpack message codec."""
