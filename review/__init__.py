"""Physician review on top of medvlm: reviewer accounts and sign-in, each reviewer's queue, the report that sets
automatic scores beside the physicians' verdicts, and chat answers sent for grading. The database is medvlm.store."""
import medvlm  # noqa: F401  first: importing medvlm sets the offline switches
