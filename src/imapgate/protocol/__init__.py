"""Sans-IO IMAP codec: bytes in, events out; events in, bytes out.

Nothing here touches a socket, a thread or asyncio.  The same grammar serves
both sides of the gateway:

* server side (mail client -> gateway): ``framing`` assembles command frames
  (lines plus literals), ``command_parser`` turns them into typed ``commands``,
  ``response_writer`` turns typed ``responses`` into bytes;
* client side (gateway -> upstream): ``command_writer`` writes commands,
  ``response_parser`` parses what the upstream server answers.

Errors raised by the codec are ``CodecError`` subclasses that say which side
broke the protocol: ``ClientProtocolError`` (a mail client sent bad input) or
``UpstreamProtocolError`` (the upstream server answered bad data).
"""
