"""RADIUS client for fastpptp (RFC 2865, 2866, 2548, 3579, 5176): a sans-I/O codec and client
core (``dictionary``, ``packet``, ``auth``, ``client``) and an asyncio UDP driver (``aio``).

``packet``/``auth``/``client`` never import asyncio, socket, time or os; ``aio`` is the only
module that opens a socket.  See docs/DESIGN.md, "RADIUS".
"""
