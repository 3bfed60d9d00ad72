"""Export stage: a trained model directory to verified int8 TFLite and ONNX (``python -m export.tflite``, ``python -m export.onnx``)."""
