"""Tests of data_tools.synthetic."""
