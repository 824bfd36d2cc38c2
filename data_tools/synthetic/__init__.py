"""Synthetic data: deterministic, CPU-independent renderers of the demo and test datasets.

  demo_dataset          the embedded demo dataset: procedural motion-action videos written as mp4 class folders
  synthetic_detection   keyframe scenes in the AVA record format (or as raw AVA-style movies) for action detection
  calibrate_demo        checks that the demo data are learnable supervised and need motion (no single-frame leak)
  portable_math         float maths that gives the same bits on every x86 CPU, used by the two renderers

They are kept apart from the conversion toolchain in `data_tools` (raw video -> TFRecord, subsets, checks, AVA):
they make data rather than convert it, and promise the same pixels and bytes on every machine (see
portable_math), which real-data tools need not. The renderers feed that toolchain as a user would (demo videos go
through `data_tools.convert`, the raw AVA-style movies through `data_tools.ava`); nothing in it imports this
package.
"""
