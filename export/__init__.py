"""Export stage (planned): int8 TFLite and ONNX from a trained model directory."""
