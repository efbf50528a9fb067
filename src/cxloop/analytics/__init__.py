"""Journey analytics: funnels (and later retention, paths, trends) as validated specs."""
