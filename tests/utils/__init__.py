"""Tests of official_cvrl.utils."""
