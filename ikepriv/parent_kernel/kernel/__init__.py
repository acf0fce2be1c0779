"""The kernel interface: XFRM value types and validation, netlink messages, the client, events."""
