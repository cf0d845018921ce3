"""The pipeline status sensor's pure core, shared by poke mode and the deferrable trigger.

- :mod:`~airflow_provider_opsera.pipeline.decision`: what the watched run's (or step's) newest record means,
  wait, succeed or fail (:class:`Watch`, :class:`StatusRules`, :func:`decide`).
- :mod:`~airflow_provider_opsera.pipeline.search`: which pipeline-activity requests prove that record is the
  newest on a busy account, in windows shown complete (:class:`WatchSearch`, :class:`WatchState`, the rounds'
  runners, and the pace of the polls).
- :mod:`~airflow_provider_opsera.pipeline.sharing`: which of many watchers' pending requests one request
  answers (the pure half of the triggerer's shared polling).

Neither does I/O or reads a clock; ``sensors/pipeline.py`` and ``triggers/pipeline.py`` do.
"""
