// Replaced by image codec shims.
