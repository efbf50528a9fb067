"""Deterministic demo data for trying cxloop without a live tracking feed."""
