"""Tests of official_cvrl.evaluation."""
