"""``make bench``: tigase-rest's REST endpoints side by side with direct XMPP (see BENCHMARKS.md)."""
