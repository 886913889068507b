"""Notifications: telling a person, wherever they are, that orch needs them (Apprise)."""
