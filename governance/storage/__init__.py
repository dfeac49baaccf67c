"""Storage: database engines, tables, migrations and the unit of work."""
