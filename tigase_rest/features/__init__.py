"""One package per feature: stanzas (pure), state/store, request validation, service."""
