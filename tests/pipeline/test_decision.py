"""The one decision function: which record decides, what its status means, and that carrying only the
relevant records forward never changes the answer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_opsera.pipeline.decision import (
    DEFAULT_FAILURE_STATUSES,
    DEFAULT_WAITING_STATUSES,
    Outcome,
    StatusRules,
    Watch,
    decide,
    normalise_status,
    relevant,
)

PID = "611e7dca57f4eff66e9db084"
OTHER = "5fbe589a0fae8b021e137534"


def rec(
    second: int,
    status: str,
    *,
    run: int | str | None = 174,
    step: str = "anchore",
    pipeline: str = PID,
    rid: str | None = None,
    message: str | None = "msg",
) -> dict:
    out = {
        # The same _id always means the same record (as in the API): derived from everything else.
        "_id": rid or f"id{second:06d}-{step}-{run!r}-{status}-{pipeline[:4]}",
        "pipeline_id": pipeline,
        "step_id": f"step-{step}",
        "step_name": step,
        "status": status,
        "run_count": run,
        "createdAt": f"2024-05-10T17:{second // 60:02d}:{second % 60:02d}.000Z",
    }
    if message is not None:
        out["message"] = message
    return out


RULES = StatusRules()


def test_no_record_waits():
    decision = decide(Watch(PID), RULES, [rec(1, "success", pipeline=OTHER)])
    assert decision.outcome is Outcome.WAIT and decision.record is None


def test_the_newest_record_of_the_newest_run_decides():
    records = [rec(1, "analyzing"), rec(5, "success"), rec(3, "failed", run=173)]
    decision = decide(Watch(PID, step_name="anchore"), RULES, records)
    assert decision.outcome is Outcome.SUCCESS and decision.record == records[1]


def test_a_newer_run_without_the_step_waits_rather_than_reusing_an_old_run():
    # Run 175 started but has not reached anchore; run 174's anchore success must not count.
    records = [rec(1, "success", run=174), rec(9, "running", run=175, step="build")]
    decision = decide(Watch(PID, step_name="anchore"), RULES, records)
    assert decision.outcome is Outcome.WAIT and decision.record is None
    assert "run 175" in decision.reason


def test_a_given_run_count_ignores_other_runs():
    records = [rec(1, "failed", run=174), rec(9, "running", run=175)]
    assert decide(Watch(PID, run_count=174), RULES, records).outcome is Outcome.FAILURE
    assert decide(Watch(PID, run_count=175), RULES, records).outcome is Outcome.WAIT
    assert decide(Watch(PID, run_count=176), RULES, records).record is None


def test_without_a_step_the_newest_record_of_the_run_decides():
    records = [rec(1, "analyzing"), rec(2, "success", step="build"), rec(3, "failed", step="sonar")]
    decision = decide(Watch(PID), RULES, records)
    assert decision.outcome is Outcome.FAILURE and decision.record == records[2]


def test_failure_carries_status_and_message():
    decision = decide(Watch(PID), RULES, [rec(1, "  FAILED ", message="Anchore found 3 critical CVEs")])
    assert decision.outcome is Outcome.FAILURE
    assert "'failed'" in decision.reason and "Anchore found 3 critical CVEs" in decision.reason


def test_message_falls_back_to_the_api_response():
    record = rec(1, "failed", message=None)
    record["api_response"] = {"message": "from api_response"}
    assert "from api_response" in decide(Watch(PID), RULES, [record]).reason


@pytest.mark.parametrize("status", sorted(DEFAULT_WAITING_STATUSES))
def test_waiting_statuses_wait(status):
    assert decide(Watch(PID), RULES, [rec(1, status.upper())]).outcome is Outcome.WAIT


@pytest.mark.parametrize("status", sorted(DEFAULT_FAILURE_STATUSES))
def test_failure_statuses_fail(status):
    assert decide(Watch(PID), RULES, [rec(1, f" {status.title()} ")]).outcome is Outcome.FAILURE


def test_statuses_ignore_case_and_blanks():
    assert normalise_status("  Processing   EVENT ") == "processing event"
    assert decide(Watch(PID), RULES, [rec(1, "Processing  Event")]).outcome is Outcome.WAIT


def test_without_success_statuses_anything_else_succeeds():
    decision = decide(Watch(PID), RULES, [rec(1, "Completed")])
    assert decision.outcome is Outcome.SUCCESS and not decision.unknown_status


def test_with_success_statuses_an_unknown_status_keeps_waiting_with_a_flag():
    rules = StatusRules.build(success=["success", "passed"])
    decision = decide(Watch(PID), rules, [rec(1, "deployed")])
    assert decision.outcome is Outcome.WAIT and decision.unknown_status
    assert "none of" in decision.reason
    assert decide(Watch(PID), rules, [rec(1, "PASSED")]).outcome is Outcome.SUCCESS


def test_a_record_without_a_status_never_succeeds():
    decision = decide(Watch(PID), RULES, [rec(1, "")])
    assert decision.outcome is Outcome.WAIT and decision.unknown_status


def test_ties_on_created_at_break_on_id():
    a, b = rec(1, "analyzing", rid="aaa"), rec(1, "success", rid="bbb")
    assert decide(Watch(PID), RULES, [b, a]).record == b
    assert decide(Watch(PID), RULES, [a, b]).record == b


def test_step_by_id_and_by_name():
    records = [rec(1, "failed", step="sonar"), rec(2, "success", step="anchore")]
    assert decide(Watch(PID, step_id="step-sonar"), RULES, records).outcome is Outcome.FAILURE
    assert decide(Watch.build(PID, step_name="ANCHORE"), RULES, records).outcome is Outcome.SUCCESS
    # Both given: both must match.
    assert decide(Watch(PID, step_id="step-sonar", step_name="anchore"), RULES, records).record is None


def test_run_count_as_text_from_a_template():
    watch = Watch.build(PID, run_count=" 174 ")
    assert watch.run_count == 174
    assert decide(watch, RULES, [rec(1, "success", run="174")]).outcome is Outcome.SUCCESS
    assert Watch.build(PID, run_count="").run_count is None
    with pytest.raises(ValueError, match="run_count"):
        Watch.build(PID, run_count="latest")
    with pytest.raises(ValueError, match="pipeline_id"):
        Watch.build("  ")


def test_rules_validation():
    with pytest.raises(ValueError, match="both waiting_statuses and failure_statuses"):
        StatusRules.build(failure=["failed", "Paused"])
    with pytest.raises(ValueError, match="empty status"):
        StatusRules.build(success=["success", " "])
    assert StatusRules.build(waiting="analyzing").waiting == frozenset({"analyzing"})
    rules = StatusRules.build(["Analyzing"], [], ["ok"])
    assert StatusRules.build(**rules.to_json()) == rules


# -- carrying knowledge forward ---------------------------------------------------------------------------
statuses = st.sampled_from(["analyzing", "running", "success", "failed", "deployed", "paused", ""])
records_strategy = st.lists(
    st.builds(
        rec,
        st.integers(0, 50),
        statuses,
        run=st.sampled_from([172, 173, 174, "174", None]),
        step=st.sampled_from(["anchore", "build", "sonar"]),
        pipeline=st.sampled_from([PID, OTHER]),
    ),
    max_size=12,
)
watches = st.builds(
    Watch,
    st.just(PID),
    run_count=st.sampled_from([None, 173, 174]),
    step_id=st.sampled_from([None, "step-anchore"]),
    step_name=st.sampled_from([None, "anchore", "build"]),
)
rules_strategy = st.sampled_from([StatusRules(), StatusRules.build(success=["success"])])


@settings(max_examples=300, deadline=None)
@given(watches, rules_strategy, records_strategy, records_strategy)
def test_relevant_records_decide_like_all_records(watch, rules, first, second):
    everything = decide(watch, rules, [*first, *second])
    carried = decide(watch, rules, [*relevant(watch, first), *second])
    compact = decide(watch, rules, relevant(watch, [*relevant(watch, second), *first]))
    assert carried == everything
    assert compact == everything
    assert len(relevant(watch, [*first, *second])) <= 2


@settings(max_examples=200, deadline=None)
@given(watches, records_strategy, st.randoms())
def test_the_decision_does_not_depend_on_order(watch, records, rnd):
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert decide(watch, RULES, shuffled) == decide(watch, RULES, records)
