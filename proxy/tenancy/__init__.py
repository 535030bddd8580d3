"""Tenancy: keys and who holds them, scopes, team data policies and boundaries, the key audit trail."""
