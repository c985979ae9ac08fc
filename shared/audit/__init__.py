"""Audit replay: re-verify ceremonies offline from signatures and hashes alone.

:mod:`~shared.audit.evidence` parses the inputs (bytes in, typed objects out),
:mod:`~shared.audit.replay` runs every check and returns a report,
:mod:`~shared.audit.report` renders it as JSON, HTML and a terminal summary. The auditor's
program (``coldstation-audit``, ``online_coordinator.audit_cli``) only reads files, asks its
own node for blocks when told to, and writes the reports; every judgement is made here.
"""
