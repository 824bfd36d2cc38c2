"""Evaluators of the downstream tasks (AVA frame-level mAP)."""
