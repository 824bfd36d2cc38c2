"""data_tools package: raw video -> TFRecord conversion, subsets, checks, AVA.

The renderers of the demo and synthetic test data are the `data_tools.synthetic` subpackage.

Importing it installs the filters of `quiet_logs` before any tool imports Apache Beam, so that no command prints
Beam's two harmless warnings about optional Google Cloud clients (nothing else is filtered).
"""

from data_tools import quiet_logs

quiet_logs.drop_known_harmless_beam_warnings()
