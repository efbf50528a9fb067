"""Closing the loop: support cases, follow-ups, notes, the unified timeline, the job worker."""
