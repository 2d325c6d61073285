# One line per module test; keep sorted.
