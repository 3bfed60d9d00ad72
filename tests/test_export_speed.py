"""The side-by-side latency report: ratios against the issue's goals, failed formats shown, not fatal."""

from benchmarks.export_speed import report


def test_report_computes_ratios_against_the_goals():
    results = {
        "saved_model": {"bytes": 177e6, "load_s": 3.0, "p50_ms": 90.0, "p90_ms": 95.0},
        "model_int8.tflite": {"bytes": 22.2e6, "load_s": 0.1, "p50_ms": 25.5, "p90_ms": 27.0},
        "model_fp32.onnx": {"bytes": 87.1e6, "load_s": 0.5, "p50_ms": 77.0, "p90_ms": 80.0},
        "model_int8_x86.onnx": {"bytes": 22.1e6, "load_s": 0.4, "p50_ms": 40.0, "p90_ms": 41.0},
        "model_int8.onnx": {"error": "cannot load"},
    }
    text = report(results, threads=2, image_size=299)
    assert "latency model_int8.tflite / saved_model = 0.283 (goal <= 0.33: meets)" in text
    assert "latency model_int8_x86.onnx / model_fp32.onnx = 0.519 (goal <= 0.45: MISSES)" in text
    assert "size model_int8.tflite / model_fp32.onnx = 0.255 (goal <= 0.26: meets)" in text
    assert "| model_int8.onnx | failed: cannot load |" in text
    assert "model_int8.onnx / model_fp32.onnx" not in text
