"""The model in service: the compiled tree scorer and the loaded model (bytes in, predictions out)."""
