"""Importers turn published per-sample results into schema-v1 traces, with a report of every judgement call."""
