"""The model layer: DLRM, checkpoints, inference precisions, training the demo model."""
