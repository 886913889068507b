"""The real-CLI end-to-end suite: genuine claude, codex, gemini, opencode and Qwen Code against a local model stub."""
