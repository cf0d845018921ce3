"""``python -m airflow_provider_opsera.verify``: verify a landed archive and write the evidence reports.

Exit status: 0 when every interval verifies (ok or warning), 1 when any does not, 2 when the verification
could not run (bad arguments, an unknown connection, an unreadable store).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.connection import DEFAULT_CONN_ID
from airflow_provider_opsera.exceptions import OpseraError

EPILOG = """\
example:
  python -m airflow_provider_opsera.verify s3://my-bucket --log-type audit --from 2026-01-01 --to 2026-12-01 \\
      --conn-id aws_default --against-api --report ./evidence/2026/

statuses: ok, warning (both pass); drift (with --against-api), missing, overlap, bad signature, broken chain,
tampered (each fails).
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m airflow_provider_opsera.verify",
        description="Verify an archive landed by the Opsera provider: for every interval of [--from, --to), a "
        "manifest exists (gaps and overlaps), every part matches its count and sha256, the revision chain "
        "(and signature) holds; with --against-api, the API's count now. Prints a table, writes report.json, "
        "report.md and report.html.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("base_url", help="the landing base, e.g. s3://bucket or file:///tmp/opsera-logs")
    p.add_argument(
        "--log-type", required=True, choices=[t.value for t in OpseraLogType], help="the log type to verify"
    )
    p.add_argument(
        "--from", dest="start", required=True, help="start of the range, inclusive (YYYY-MM-DD or ISO)"
    )
    p.add_argument("--to", dest="end", required=True, help="end of the range, exclusive (YYYY-MM-DD or ISO)")
    p.add_argument(
        "--interval", default="1d", help="the expected interval of a folder: 1d (default), 1h, 15m, 1w, P1D"
    )
    p.add_argument(
        "--against-api", action="store_true", help="also compare each interval's count with the API now"
    )
    p.add_argument(
        "--opsera-conn-id", default=DEFAULT_CONN_ID, help=f"the Opsera connection (default {DEFAULT_CONN_ID})"
    )
    p.add_argument("--conn-id", help="the connection of the archive's store, e.g. aws_default")
    p.add_argument("--signing-conn-id", help="the connection whose password is the manifests' signing key")
    p.add_argument(
        "--report",
        default="./opsera-verify-report",
        metavar="PATH",
        help="folder (path or URL) for report.json, report.md and report.html (default ./opsera-verify-report)",
    )
    p.add_argument("--report-conn-id", help="the connection of the report folder's store, if it is a URL")
    p.add_argument("--no-report", action="store_true", help="print the table only")
    p.add_argument("--full", action="store_true", help="one table row per interval (runs are not merged)")
    p.add_argument("--workers", type=int, default=4, help="folders checked at once (default 4)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from airflow_provider_opsera.verify import text
    from airflow_provider_opsera.verify.reports import write_reports
    from airflow_provider_opsera.verify.verification import verify_archive

    try:
        report = verify_archive(
            args.base_url,
            args.log_type,
            args.start,
            args.end,
            interval=args.interval,
            against_api=args.against_api,
            opsera_conn_id=args.opsera_conn_id,
            conn_id=args.conn_id,
            signing_conn_id=args.signing_conn_id,
            workers=args.workers,
        )
        print(text.table(report, full=args.full))
        if not args.no_report:
            written = write_reports(report, args.report, conn_id=args.report_conn_id)
            print("Reports: " + ", ".join(written.values()))
    except (ValueError, OSError, OpseraError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if type(err).__name__ != "AirflowNotFoundException":  # an unknown connection id
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
