"""What Keras' fit runs with, for training and tuning alike: devices, precision and the
distribution strategy (`hardware`), the callbacks (`callbacks`), and KerasTuner's
HyperModel (`hypermodel`) and MLflow-tracked Tuner (`tracked_tuner`)."""
