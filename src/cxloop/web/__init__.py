"""Web: the tracking API (/v1), the REST API (/api/v1) and, later, the pages."""
