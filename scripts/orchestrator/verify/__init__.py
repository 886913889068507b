"""The project's own tests as a gate: find the test command, run it on one commit, read
which tests failed.

Pure of the coordinator and free of pydantic: runner.py is what the verifier pseudo-agent
runs (inside its confinement, on a checkout of one integration commit); engine/verification.py
decides when to run it and what a result means for the session.
"""
