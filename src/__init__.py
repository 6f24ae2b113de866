"""ofakd-mindspore: One-for-All knowledge distillation between heterogeneous architectures."""
import os

# MindSpore's bundled oneDNN picks a reference (very slow) convolution kernel on AVX-512 CPUs;
# capping the ISA at AVX2 must happen before the first MindSpore op runs.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
# Quieter MindSpore logs unless the user asked for something else.
os.environ.setdefault("GLOG_v", "3")
