"""One module per thing the runbooks act on: each reads, acts through effects, reads back."""
