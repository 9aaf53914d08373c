"""What a training run writes in its logdir, by name (read by export and the flows)."""

CHECKPOINT_DIR = "delf_tf2-ckpt"
WEIGHTS_NAME = "delf_weights"
MANIFEST_NAME = "train_manifest.json"
