"""Transports: thin adapters that move protocol messages between a peer and the dispatcher."""
