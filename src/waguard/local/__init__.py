"""The local stack behind `waguard up`: every service on loopback, no account anywhere."""
