"""Bots over HTTP: webhooks for stanzas to the component's domain, and stanzas as JSON."""
