"""Avatars: PEP (XEP-0084), vCard4 (XEP-0292) and vcard-temp (XEP-0054)."""
