"""External statuses: presence shown on behalf of a user who has no session (Tigase's UserStatus)."""
