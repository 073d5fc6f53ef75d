"""Training: time split, baselines, tuned LightGBM, calibration, evaluation, MLflow registry."""

import os

# LightGBM's OpenMP threads spin while they wait; on a busy 2-core machine that makes training about
# ten times slower. The policy is read once, when the OpenMP runtime loads (with lightgbm).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
