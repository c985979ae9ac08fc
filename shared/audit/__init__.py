"""Audit replay: re-verify ceremonies offline from signatures and hashes alone.

:mod:`~shared.audit.evidence` parses the inputs (bytes in, typed objects out),
:mod:`~shared.audit.replay` runs every check and returns a report,
:mod:`~shared.audit.report` renders it as JSON, HTML and a terminal summary. The auditor's
program (``coldstation-audit``, ``online_coordinator.audit_cli``) only reads files, asks its
own node for blocks when told to, and writes the reports; every judgement is made here.

Each rule lives in the module named for it: :mod:`~shared.audit.change` (what is change,
from the journal-pinned descriptors), :mod:`~shared.audit.keys` (key states from the
journal), :mod:`~shared.audit.receipts` (the receipt and deferred-record contract),
:mod:`~shared.audit.birth` (birth heights against the evidence and the chain),
:mod:`~shared.audit.chain` (where the walk starts, outflows), and
:mod:`~shared.audit.text` (the one escaper for every evidence text shown).
"""
