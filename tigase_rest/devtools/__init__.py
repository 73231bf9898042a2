"""Developer tools: a throwaway Prosody for the integration tests and ``make run``.

Nothing here is used by the component itself.
"""
