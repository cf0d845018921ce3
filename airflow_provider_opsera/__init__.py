"""Apache Airflow provider for Opsera's audit and activity logs API."""

from __future__ import annotations

__version__ = "0.1.0"
