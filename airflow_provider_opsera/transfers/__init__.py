"""Transfers from Opsera's logs API into databases: ``transfers.postgres.OpseraLogsToPostgresOperator``."""
