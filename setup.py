"""Packaging for Beam workers (Dataflow's --setup_file) and `pip install -e .`; dependencies: requirements.txt."""
import setuptools

setuptools.setup(
    name='official_cvrl',
    version='0.1.0',
    description='CVRL: Spatiotemporal Contrastive Video Representation Learning, TF2 Model Garden style.',
    packages=setuptools.find_packages(include=['official_cvrl', 'official_cvrl.*', 'data_tools', 'data_tools.*']),
    python_requires='>=3.10',
    install_requires=['av', 'numpy', 'tensorflow'],
)
