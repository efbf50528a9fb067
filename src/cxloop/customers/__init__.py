"""Customer profiles: search, one profile with identities and timeline, merges, stats."""
