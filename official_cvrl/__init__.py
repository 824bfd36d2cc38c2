"""official_cvrl: Spatiotemporal Contrastive Video Representation Learning in TF2 Model Garden style."""
import os

# TensorFlow 2.20 enables its oneDNN kernels only on CPUs it knows to benefit (AVX-512 / AMX Intel parts). On other
# x86 CPUs (e.g. AMD EPYC without AVX-512) the fallback Conv3D gradient is ~200x slower, which makes CPU training
# (the demo, the tests) crawl. The variable is read when TensorFlow is first imported, so set it before that;
# an explicit user setting wins.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
