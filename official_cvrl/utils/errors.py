"""Errors that carry a message meant for the user, not a stack trace.

`train.py` and the command-line tools catch `UserInputError` and print only its message: raise it wherever bad
input (a missing file, an empty dataset, an unknown config key, a mismatched checkpoint) is detected, and say in
the message which file or key is wrong and what to do.
"""


class UserInputError(ValueError):
  """Bad input detected before or during a run; the message names the culprit and the fix."""


# Marker placed in the message of the in-graph finite-loss assertion, so the driver can recognise it in the
# TensorFlow error that carries it and replace the stack trace with an explanation.
NON_FINITE_LOSS_MARKER = 'CVRL_NON_FINITE_LOSS'
