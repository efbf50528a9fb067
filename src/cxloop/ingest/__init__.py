"""Getting customer data in: tracking messages, identity resolution and file imports."""
