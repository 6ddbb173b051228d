"""Accountability by construction: authorisations, roles, the audit log, suspension rules, retention."""
