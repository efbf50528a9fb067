"""Reports that combine several features into one answer (the overview, for now)."""
