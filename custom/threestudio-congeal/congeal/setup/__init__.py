"""Set-up report: the checks behind `congeal doctor`."""
