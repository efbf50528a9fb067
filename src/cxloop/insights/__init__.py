"""Insights: turning the measurements into decisions (gaps, drivers, segments, risk)."""
