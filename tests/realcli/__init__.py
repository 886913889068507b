"""The real-CLI end-to-end suite: genuine claude, codex and gemini against a local model stub."""
