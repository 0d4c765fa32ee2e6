"""Packaging for resdet: residual backbones + Faster R-CNN."""

from setuptools import find_packages, setup

# `resdet export` writes ONNX (opset 20) and detection.export.OnnxPredictor runs it
EXPORT = ["onnx>=1.15", "onnxruntime>=1.17", "openvino>=2024.0"]

setup(
    name="resdet",
    version="0.1.0",
    description="Object detection on residual backbones: ResNet pretraining, Faster R-CNN, "
    "VOC/COCO evaluation and submission",
    python_requires=">=3.9",
    packages=find_packages(
        include=["engine*", "backbones*", "detection*", "tools*", "configs*", "benchmarks*"]
    ),
    # the configs ship with the package, so `--config configs/...` works outside a checkout
    package_data={"configs": ["*/*.yaml"], "tools": ["*.sh"]},
    install_requires=[
        "torch>=2.3",
        "torchvision>=0.18",
        "pycocotools>=2.0.6",
        "faster-coco-eval>=1.6",
        "albumentations>=1.4",
        "opencv-python-headless>=4.8",
        "pyyaml>=6.0",
        "numpy>=1.24",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "ruff>=0.4",
            "mypy>=1.8",
            "hypothesis>=6",
            "types-PyYAML",
            "tensorboard>=2.12",  # tests/engine/test_engine_logging.py writes events
            *EXPORT,
        ],
        "tb": ["tensorboard>=2.12"],
        "export": EXPORT,
    },
    entry_points={"console_scripts": ["resdet=tools.cli:main"]},
)
