"""MoLE-Flow research harness."""
