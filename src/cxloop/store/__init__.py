"""App database: the entities people edit (customers, identities, keys, rejected messages)."""
