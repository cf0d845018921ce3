"""Sensors that wait on Opsera."""
