"""inception-edge's base layer: what runs on the device.

numpy and pillow (plus, for inference, one backend: ai-edge-litert, tflite-runtime or
onnxruntime; for DICOM files, pydicom), never TensorFlow. The training, export and benchmark stages import from here,
never the reverse, so data loading, image preparation and metrics are computed one way
everywhere.
"""
