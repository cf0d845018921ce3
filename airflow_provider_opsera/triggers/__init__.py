"""Triggers for deferrable Opsera sensors."""
