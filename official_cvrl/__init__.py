"""official_cvrl: Spatiotemporal Contrastive Video Representation Learning in TF2 Model Garden style."""
