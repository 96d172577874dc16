"""waguard: incident-response runbook automation for the WhatsApp Business Platform."""

__version__ = "0.1.0"
