"""Spend: what agents cost (pricing), what a session may spend (budget), how many run at once (caps)."""
