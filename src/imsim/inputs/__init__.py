"""What the model starts from: packaged data, the baseline cells, the evidence library and the baseline fit."""
