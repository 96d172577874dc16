"""What every playbook run does around its steps."""
