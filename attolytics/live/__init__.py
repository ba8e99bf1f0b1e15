"""The live view of arriving events: the feed of the public port's latest requests, and their entries."""
