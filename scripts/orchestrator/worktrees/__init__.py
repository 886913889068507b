"""Parallel agents in their own git worktrees: the session's base and integration branch,
one worktree per writing agent, commits and merges after each task, clean-up.

Pure of the coordinator: every function takes paths and names and runs the real `git`
binary (git.py); engine/integration.py decides when to call them.
"""
