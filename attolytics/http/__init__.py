"""The HTTP side: requests in, JSON answers out. It checks everything a request can be refused
for before any write, and stores rows only through the tables and the writer the service hands
it; it never imports the storage side."""
