"""The papers' analyses and studies: morphing and walks, confidence buckets, pixel flips, universal perturbations, transfer."""
